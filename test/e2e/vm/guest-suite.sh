#!/bin/bash
# Runs INSIDE the VM (started by test/e2e/run.sh through vm/run-in-vm.sh), in the
# repository root: sets up LIO with two tcm_loop paths to one ramdisk backstore, exports
# what the tests need, and runs the given Node script (default: the test suite) in one
# Node process.
#   guest-suite.sh [NODE_ARGS...]   default: --test-reporter=spec dist/test/e2e/suite.js
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/vm-lib.sh"
t0=$(vm_now)
vm_lio_env 2 || { echo "guest-suite: LIO setup failed" >&2; exit 125; }
inits=
for ((i = 1; i <= 2; i++)); do
  read -r w < "$VM_CFS/target/loopback/$(vm_tgt_wwn "$i")/tpgt_1/nexus" || exit 125
  inits+="0x${w#naa.} "
done
export PRH_E2E_DISKS="$VM_DISKS" PRH_E2E_SGS="$VM_SGS" PRH_E2E_INITIATORS="${inits% }"
echo "# guest: LIO ready after $(( $(vm_now) - t0 )) ms: disks $PRH_E2E_DISKS, sg $PRH_E2E_SGS, initiators $PRH_E2E_INITIATORS"
[ $# -gt 0 ] || set -- --test-reporter=spec dist/test/e2e/suite.js
exec node "$@"
