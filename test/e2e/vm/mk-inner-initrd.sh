#!/bin/bash
# Build the initramfs of the NESTED (level-2) guest used by test/e2e/qemu-chain.test.ts and
# test/e2e/migration.test.ts: static busybox, virtio-scsi + sd + sg modules, sg_persist and
# its libraries, and an /init that
#   - by default runs the fixed PR script below (REGISTER 0xbeef, RESERVE type 5) and powers off;
#   - with `inner_serve` on the kernel command line, serves commands from the serial console
#     (ttyS0) instead, so a test can drive the guest across a live migration: each line
#     "CMD ID SHELL-TEXT" is eval'ed, its output is framed by "INNER-BEGIN ID" and
#     "INNER-END ID rc=N" lines; `pr ARGS` is sg_persist -n ARGS /dev/sda, retried past
#     UNIT ATTENTIONs (exit 6). The loop runs until "CMD ID poweroff -f".
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
if grep -qw inner_serve /proc/cmdline; then
  exec </dev/ttyS0 >/dev/ttyS0 2>&1
  stty -echo 2>/dev/null
  pr() { for i in 1 2 3 4; do sg_persist -n "$@" $D; rc=$?; [ $rc = 6 ] || return $rc; done; return $rc; }
  echo "INNER-READY at $(cut -d' ' -f1 /proc/uptime)s"
  while IFS= read -r line; do
    line=${line%$(printf '\r')}
    case "$line" in "CMD "*) ;; *) continue ;; esac
    rest=${line#CMD }; id=${rest%% *}; cmd=${rest#* }
    echo "INNER-BEGIN $id"
    eval "$cmd"
    echo "INNER-END $id rc=$?"
  done
  poweroff -f
fi
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
