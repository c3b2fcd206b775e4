#!/bin/bash
# Runs INSIDE the VM (started by test/e2e/run.sh through vm/run-in-vm.sh), in the
# repository root: sets up LIO with two tcm_loop paths to one ramdisk backstore and a
# third path to it over iSCSI (vm_iscsi_setup), exports what the tests need, and runs the
# given Node script (default: the test suite) in one Node process.
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
# a third nexus to the same LU over iSCSI (successful PREEMPT AND ABORT needs it, see
# vm_iscsi_setup); on failure the variable stays unset and the test that needs it fails
t1=$(vm_now)
if iscsi=$(vm_iscsi_setup); then
  read -r blk sg iqn <<< "$iscsi"
  export PRH_E2E_ISCSI="/dev/$blk /dev/$sg $iqn"
  echo "# guest: iSCSI nexus ready after $(( $(vm_now) - t1 )) ms: $PRH_E2E_ISCSI"
else
  echo "# guest: iSCSI setup FAILED" >&2
fi
[ $# -gt 0 ] || set -- --test-reporter=spec dist/test/e2e/suite.js
# PRH_E2E_NODE: the suite, and every helper it starts (bin/qemu-pr-helper runs the PATH's
# node), run on that Node.
if [ -n "${PRH_E2E_NODE:-}" ]; then export PATH="$(dirname "$PRH_E2E_NODE"):$PATH"; fi
echo "# guest: $(command -v node) $(node --version)"
exec node "$@"
