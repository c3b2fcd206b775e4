/** Capability numbers (<linux/capability.h>) and their names, as capabilities(7) spells them. */

export const CAP_SYS_RAWIO = 17;
export const CAP_SYS_ADMIN = 21;

const NAMES = [
  'cap_chown', 'cap_dac_override', 'cap_dac_read_search', 'cap_fowner', 'cap_fsetid', 'cap_kill',
  'cap_setgid', 'cap_setuid', 'cap_setpcap', 'cap_linux_immutable', 'cap_net_bind_service',
  'cap_net_broadcast', 'cap_net_admin', 'cap_net_raw', 'cap_ipc_lock', 'cap_ipc_owner',
  'cap_sys_module', 'cap_sys_rawio', 'cap_sys_chroot', 'cap_sys_ptrace', 'cap_sys_pacct',
  'cap_sys_admin', 'cap_sys_boot', 'cap_sys_nice', 'cap_sys_resource', 'cap_sys_time',
  'cap_sys_tty_config', 'cap_mknod', 'cap_lease', 'cap_audit_write', 'cap_audit_control',
  'cap_setfcap', 'cap_mac_override', 'cap_mac_admin', 'cap_syslog', 'cap_wake_alarm',
  'cap_block_suspend', 'cap_audit_read', 'cap_perfmon', 'cap_bpf', 'cap_checkpoint_restore',
];

export function capabilityName(cap: number): string {
  return NAMES[cap] ?? `cap_${cap}`;
}

export function maskOf(caps: readonly number[]): bigint {
  return caps.reduce((mask, cap) => mask | (1n << BigInt(cap)), 0n);
}

export function capabilitiesIn(mask: bigint): number[] {
  const caps: number[] = [];
  for (let cap = 0; mask >> BigInt(cap) !== 0n; cap++) {
    if ((mask >> BigInt(cap)) & 1n) caps.push(cap);
  }
  return caps;
}

/** "cap_sys_rawio,cap_sys_admin", or "none". */
export function describeMask(mask: bigint): string {
  const caps = capabilitiesIn(mask);
  return caps.length === 0 ? 'none' : caps.map(capabilityName).join(',');
}
