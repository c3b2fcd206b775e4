/** User and group lookups through NSS (getpwnam/getgrnam), as the reference does for -u/-g. */
import { libc, readU32At } from './libc.js';

// struct passwd { char *pw_name; char *pw_passwd; uid_t pw_uid; gid_t pw_gid; ... }
const PASSWD_UID_OFFSET = 16;
// struct group { char *gr_name; char *gr_passwd; gid_t gr_gid; ... }
const GROUP_GID_OFFSET = 16;

/** The uid of user `name`, or null if NSS does not know it. */
export function lookupUserId(name: string): number | null {
  return readU32At(libc.getpwnam(name), PASSWD_UID_OFFSET);
}

/** The gid of group `name`, or null if NSS does not know it. */
export function lookupGroupId(name: string): number | null {
  return readU32At(libc.getgrnam(name), GROUP_GID_OFFSET);
}
