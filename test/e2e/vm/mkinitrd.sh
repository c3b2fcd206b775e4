#!/bin/bash
# Build a tiny initramfs: static busybox + the few modules needed to mount the
# host's root filesystem over virtio-9p, then an overlay (tmpfs upper) on top.
# Everything else (target_core, tcm_loop, sd_mod, dm-multipath, ...) is loaded
# later with the host's own modprobe from the shared /lib/modules tree.
#
# usage: mkinitrd.sh [OUT.cpio.gz]   (env KVER overrides the kernel version)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KVER=${KVER:-$(ls /lib/modules | sort -V | tail -1)}
[ -d "/lib/modules/$KVER" ] || { echo "no /lib/modules/$KVER" >&2; exit 1; }
OUT=${1:-$HERE/../.cache/initrd-$KVER.cpio.gz}
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] && ! ldd "$BUSYBOX" >/dev/null 2>&1 || { echo "need a static busybox at $BUSYBOX (apt-get install busybox-static)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"/{bin,dev,proc,sys,lower,upper,newroot,lib/modules}
cp "$BUSYBOX" "$WORK/bin/busybox"

# module load order (dependencies first), resolved by the host's kmod
: > "$WORK/modules.list"
for m in virtio_pci virtio_mmio 9pnet_virtio 9p overlay virtio_console; do
  modprobe -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  mkdir -p "$WORK$(dirname "$ko")"
  cp "$ko" "$WORK$ko"
  echo "$ko" >> "$WORK/modules.list"
done

cp "$HERE/initrd-init.sh" "$WORK/init"
chmod 755 "$WORK/init"
mkdir -p "$(dirname "$OUT")"
(cd "$WORK" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$OUT"
