/**
 * Linux x86_64 / aarch64 (LP64, glibc) struct layouts and constants, checked against
 * docs/internals.md#struct-layouts (measured with offsets.c). 32-bit ABIs are not supported.
 */
import { arch } from 'node:process';

if (arch !== 'x64' && arch !== 'arm64') {
  throw new Error(`Cannot use the native layer: architecture '${arch}' is not supported (x64 and arm64 only)`);
}

/** struct sg_io_hdr (include/scsi/sg.h), 88 bytes. */
export const SG_IO_HDR = {
  SIZE: 88,
  INTERFACE_ID: 0, // int, 'S'
  DXFER_DIRECTION: 4, // int
  CMD_LEN: 8, // u8
  MX_SB_LEN: 9, // u8
  IOVEC_COUNT: 10, // u16
  DXFER_LEN: 12, // u32
  DXFERP: 16, // void *
  CMDP: 24, // u8 *
  SBP: 32, // u8 *
  TIMEOUT: 40, // u32, milliseconds
  FLAGS: 44, // u32
  PACK_ID: 48, // int
  USR_PTR: 56, // void *
  STATUS: 64, // u8
  MASKED_STATUS: 65, // u8
  MSG_STATUS: 66, // u8
  SB_LEN_WR: 67, // u8
  HOST_STATUS: 68, // u16
  DRIVER_STATUS: 70, // u16
  RESID: 72, // int
  DURATION: 76, // u32
  INFO: 80, // u32
} as const;

export const SG_IO = 0x2285;
export const SG_INTERFACE_ID = 0x53; // 'S'
export const SG_DXFER_NONE = -1;
export const SG_DXFER_TO_DEV = -2;
export const SG_DXFER_FROM_DEV = -3;

/** struct msghdr, 56 bytes. */
export const MSGHDR = {
  SIZE: 56,
  NAME: 0,
  NAMELEN: 8,
  IOV: 16,
  IOVLEN: 24,
  CONTROL: 32,
  CONTROLLEN: 40,
  FLAGS: 48,
} as const;

/** struct iovec, 16 bytes. */
export const IOVEC = { SIZE: 16, BASE: 0, LEN: 8 } as const;

/** struct cmsghdr: size_t cmsg_len, int level, int type, then data at CMSG_DATA (16). */
export const CMSGHDR = { SIZE: 16, LEN: 0, LEVEL: 8, TYPE: 12, DATA: 16 } as const;
/** Linux SCM_MAX_FD: the most fds one sendmsg can carry. */
export const SCM_MAX_FD = 253;
/** CMSG_SPACE(4 * SCM_MAX_FD): room for every fd a single message can bring. */
export const CMSG_RECV_SPACE = CMSGHDR.SIZE + ((4 * SCM_MAX_FD + 7) & ~7);

export function cmsgAlign(len: number): number {
  return (len + 7) & ~7;
}

/** struct sockaddr_un: sa_family_t (u16) then sun_path[108]. */
export const SOCKADDR_UN = { SIZE: 110, FAMILY: 0, PATH: 2, PATH_MAX: 108 } as const;

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_TYPE = 3;
export const SO_ACCEPTCONN = 30;
export const SCM_RIGHTS = 1;
export const MSG_CTRUNC = 0x8;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CMSG_CLOEXEC = 0x40000000;

export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const FD_CLOEXEC = 1;
export const O_ACCMODE = 3;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;

/** ioctl FIONREAD (TIOCINQ on sockets): bytes waiting to be read. */
export const FIONREAD = 0x541b;

/** struct epoll_event: packed on x86_64 (u32 events, u64 data: 12 bytes), 16 bytes on arm64. */
export const EPOLL_EVENT = arch === 'x64'
  ? { SIZE: 12, EVENTS: 0, DATA: 4 } as const
  : { SIZE: 16, EVENTS: 0, DATA: 8 } as const;
export const EPOLL_CLOEXEC = 0o2000000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
export const EPOLLIN = 0x1;
export const EPOLLRDHUP = 0x2000;
export const EPOLLONESHOT = 0x40000000;
