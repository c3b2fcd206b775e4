#!/bin/bash
# Install what the e2e suite needs, from Debian's packages only (idempotent: does
# nothing when everything is already installed). About 90 MiB to download, 500 MiB
# installed; the kernel image + modules are 67/391 MiB of that.
set -euo pipefail
PKGS=(
  qemu-system-x86      # qemu-system-x86_64 (TCG) with virtfs (9p); qemu-system-common brings /usr/bin/qemu-pr-helper
  linux-image-amd64    # guest kernel + modules (target_core_mod, tcm_loop, sd_mod, sg, dm-multipath, 9p, ...)
  busybox-static       # initramfs userland
  cpio kmod            # initramfs packing, modprobe
  udev                 # systemd-udevd (multipath needs udev)
  sg3-utils            # sg_persist: the oracle the tests check the disk with
  multipath-tools      # multipathd, mpathpersist (for the multipath tests)
  open-iscsi           # iscsid, iscsiadm: the iSCSI nexus (vm_iscsi_setup) a successful PREEMPT AND ABORT is sent from
  nftables             # nft: iscsi-stall.test.ts drops the iSCSI nexus's packets on lo
  python3              # extract-vmlinux.py (host side only)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || { echo "install-deps: need root to apt-get install: ${missing[*]}" >&2; exit 1; }
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -q --no-install-recommends "${missing[@]}"
