#!/bin/bash
# bench/e2e/run.sh -- READ KEYS overhead inside the VM on the LIO disk: direct SG_IO vs
# our helper vs Debian's C helper (bench/e2e/overhead.ts). Same VM and preparation as
# the e2e suite (test/e2e/run.sh). PRH_BENCH_N (default 1000), PRH_BENCH_ROUNDS (3).
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "$HERE/../../test/e2e/run.sh" node dist/bench/e2e/overhead.js
