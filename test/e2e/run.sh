#!/bin/bash
# test/e2e/run.sh -- the real-SCSI end-to-end suite (npm run test:e2e).
#
# On the host: installs the Debian packages it needs (idempotent), builds the project,
# prepares the guest kernel + initramfs pieces in test/e2e/.cache, then boots Debian's
# kernel under qemu-system-x86_64 (TCG) with the host's root filesystem shared into the
# guest and this repository shared read-write. Inside the guest (vm/guest-suite.sh):
# LIO with two tcm_loop paths to one ramdisk, then ONE Node process runs the whole suite
# (dist/test/e2e/suite.js). The guest's output streams here; the exit status is the
# suite's. A guest that does not finish within PRH_E2E_TIMEOUT seconds is killed and
# reported (exit 124); 125 means the harness itself failed.
#
#   test/e2e/run.sh                 the suite
#   test/e2e/run.sh node ARGS...    any Node script in the same prepared guest, e.g.
#                                   bench/e2e/run.sh uses it for the overhead benchmark
# Environment: PRH_E2E_NODE (the node binary the guest runs the suite and the helpers with;
# default: the one in the guest's PATH), PRH_E2E_TIMEOUT (default 1800 s), PRH_E2E_SKIP_CHAIN=1 (skip the nested
# QEMU test, ~2 min), PRH_E2E_NO_INSTALL=1, PRH_E2E_NO_BUILD=1, and the VM_* knobs of
# vm/run-in-vm.sh (VM_SMP, VM_MEM, VM_ACCEL, VM_VERBOSE, ...).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=$HERE/.cache
T0=$(date +%s.%N)
elapsed() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $T0}"; }
say() { echo "e2e: $*" >&2; }

if [ -z "${PRH_E2E_NO_INSTALL:-}" ]; then
  bash "$HERE/vm/install-deps.sh" >&2 || { say "installing the Debian packages failed"; exit 125; }
fi
if [ -z "${PRH_E2E_NO_BUILD:-}" ]; then
  # tsc and the bundle (scripts/bundle.mjs): the e2e suite runs the helper as shipped
  (cd "$ROOT" && npm run --silent build) >&2 || { say "the build failed"; exit 125; }
fi
[ -f "$ROOT/dist/test/e2e/suite.js" ] || { say "dist/test/e2e/suite.js missing (build first)"; exit 125; }

# kernel version: the newest with both an image and modules (same rule as run-in-vm.sh)
KVER=${VM_KVER:-}
if [ -z "$KVER" ]; then
  for v in $(ls /lib/modules 2>/dev/null | sort -V -r); do [ -r "/boot/vmlinuz-$v" ] && { KVER=$v; break; }; done
fi
[ -n "$KVER" ] || { say "no /boot/vmlinuz-* with /lib/modules (apt-get install linux-image-amd64)"; exit 125; }
export VM_KVER=$KVER
mkdir -p "$CACHE"
INNER=$CACHE/inner-initrd-$KVER.cpio.gz
if [ ! -s "$INNER" ] || [ "$HERE/vm/mk-inner-initrd.sh" -nt "$INNER" ]; then
  KVER=$KVER bash "$HERE/vm/mk-inner-initrd.sh" "$INNER" >/dev/null || { say "building the inner initramfs failed"; exit 125; }
fi
export PRH_E2E_VMLINUX=$CACHE/vmlinux-$KVER PRH_E2E_INNER_INITRD=$INNER
say "prepared in $(elapsed) s (kernel $KVER); booting the VM"

# 1800: the suite grew by the QEMU 11 migration tests (~5 + 2 min under TCG) in issue 15
TIMEOUT=${PRH_E2E_TIMEOUT:-1800}
GUEST=("$HERE/vm/guest-suite.sh")
[ "${1:-}" = node ] && { shift; GUEST+=("$@"); }
cd "$ROOT" || exit 125
VM_WORK=$ROOT VM_TIMEOUT=$TIMEOUT VM_MEM=${VM_MEM:-1536} VM_TIMING=1 \
  VM_ENV="PRH_E2E_NODE PRH_E2E_VMLINUX PRH_E2E_INNER_INITRD PRH_E2E_SKIP_CHAIN PRH_E2E_SKIP_MIGRATION PRH_E2E_QEMU11_DIR PRH_E2E_INNER_TIMEOUT_MS PRH_BENCH_N PRH_BENCH_ROUNDS" \
  "$HERE/vm/run-in-vm.sh" "${GUEST[@]}"
rc=$?
case $rc in
  0) say "PASSED in $(elapsed) s" ;;
  124) say "FAILED: the VM did not finish within ${TIMEOUT} s and was killed ($(elapsed) s); console: $CACHE/last-console.log" ;;
  125) say "FAILED: harness/VM failure ($(elapsed) s); console: $CACHE/last-console.log" ;;
  *) say "FAILED with status $rc in $(elapsed) s" ;;
esac
exit $rc
