#!/bin/bash
# Build the initramfs of the NESTED (level-2) guest used by test/e2e/qemu-chain.test.ts:
# static busybox, virtio-scsi + sd + sg modules, sg_persist and its libraries,
# and an /init that runs the PR commands given on the kernel command line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
KVER=${KVER:-$(ls /lib/modules | sort -V | tail -1)}
OUT=${1:-$HERE/../.cache/inner-initrd-$KVER.cpio.gz}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$W"/{bin,dev,proc,sys,lib64,lib/x86_64-linux-gnu,usr/lib/x86_64-linux-gnu}
cp /bin/busybox "$W/bin/busybox"
: > "$W/modules.list"
for m in virtio_pci virtio_mmio virtio_scsi sd_mod sg; do
  modprobe -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r ko; do mkdir -p "$W$(dirname "$ko")"; cp "$ko" "$W$ko"; echo "$ko" >> "$W/modules.list"; done
for b in /usr/bin/sg_persist; do
  cp "$b" "$W/bin/"
  ldd "$b" | grep -o '/[^ ]*' | while read -r l; do mkdir -p "$W$(dirname "$l")"; cp -L "$l" "$W$l"; done
done
cat > "$W/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
while read -r ko; do insmod "$ko" 2>/dev/null; done < /modules.list
echo "inner: modules loaded at $(cut -d' ' -f1 /proc/uptime)s"
for i in $(seq 900); do [ -b /dev/sda ] && break; sleep 0.1; done
D=/dev/sda
echo "inner: $D present at $(cut -d' ' -f1 /proc/uptime)s"
sg_persist -n --in --read-keys $D; echo "INNER read-keys rc=$?"
echo "### inner: REGISTER 0xbeef (virtio-scsi -> QEMU scsi-block -> pr-manager-helper -> helper -> SG_IO -> LIO)"
sg_persist -n --out --register --param-sark=0xbeef $D; echo "INNER register rc=$?"
sg_persist -n --in --read-keys $D; echo "INNER read-keys rc=$?"
echo "### inner: RESERVE type 5 (Write Exclusive, registrants only)"
sg_persist -n --out --reserve --param-rk=0xbeef --prout-type=5 $D; echo "INNER reserve rc=$?"
sg_persist -n --in --read-reservation $D; echo "INNER read-reservation rc=$?"
echo "INNER-DONE at $(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
INIT
chmod 755 "$W/init"
(cd "$W" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$OUT"
echo "$OUT"
