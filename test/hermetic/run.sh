#!/usr/bin/env bash
# Hermeticity check: runs the unit and integration tests (package.json's test command)
# with the optional host packages hidden, so that a test which silently relies on one of
# them fails here instead of passing only on a machine where the e2e suite (or a
# developer) happened to install it. Tests that need a hidden package must skip and say
# why; a skip without a reason fails this check too.
#
# Mechanism (root only): a private mount namespace (unshare --mount, propagation private,
# so nothing leaks to the host) in which /usr and /etc are overlayfs mounts whose upper
# layer, on a tmpfs, holds a whiteout (character device 0:0) for every file of the hidden
# packages (dpkg -L), plus a few paths hidden by name whichever package ships them
# (libmpathpersist/libmpathcmd, /usr/bin/qemu-system-*, /usr/bin/qemu-pr-helper). A
# whiteout makes the path absent (ENOENT, existsSync false), unlike an empty file
# bind-mounted over it, which would still "exist". ld.so.cache is rebuilt inside the
# namespace (the write goes to the tmpfs) so dlopen by soname does not find them either.
# Writes to /usr or /etc by the tests land on the tmpfs and vanish with the namespace.
#
# Usage: test/hermetic/run.sh [FILE.test.js...]   build, then package.json's tests (or
#                                                 only these files) with the packages hidden
#   HERMETIC_HIDE_PACKAGES="a b"         override the packages to hide
#   HERMETIC_TAP=/path/file.tap          keep the TAP report (default: a temporary file)
# Exit status: 0 all passed or skipped with a reason; 1 a failure or a reasonless skip;
# 125 the check could not be set up (not root, no overlayfs, ...).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
say() { echo "hermetic: $*" >&2; }

# Optional host packages: what .ci/run and test/e2e/vm/install-deps.sh install beyond
# Node's own needs. Not installed ones are simply not there to hide.
DEFAULT_HIDE="multipath-tools qemu-system-x86 qemu-system-common qemu-system-data sg3-utils open-iscsi nftables"
read -r -a HIDE_PACKAGES <<<"${HERMETIC_HIDE_PACKAGES:-$DEFAULT_HIDE}"
# Hidden by name too, whatever package ships them (e.g. a future libmpathpersist0).
HIDE_GLOBS=(
  /usr/lib/libmpathpersist.so* /usr/lib/libmpathcmd.so*
  /usr/lib/*-linux-gnu/libmpathpersist.so* /usr/lib/*-linux-gnu/libmpathcmd.so*
  /usr/lib64/libmpathpersist.so* /usr/lib64/libmpathcmd.so*
  /usr/bin/qemu-system-* /usr/bin/qemu-pr-helper
)
# Overlaid directories (every hidden path must be below one of them).
TOPS=(/usr /etc)

inside() {
  local list="$1" scratch="$2" tap="$3"
  shift 3
  mount -t tmpfs -o mode=0700 hermetic "$scratch"
  local top
  for top in "${TOPS[@]}"; do
    mkdir -p "$scratch/upper$top" "$scratch/work$top"
  done
  local path
  while IFS= read -r path; do
    mkdir -p "$scratch/upper$(dirname "$path")"
    mknod "$scratch/upper$path" c 0 0
  done <"$list"
  for top in "${TOPS[@]}"; do
    mount -t overlay hermetic-overlay -o "lowerdir=$top,upperdir=$scratch/upper$top,workdir=$scratch/work$top" "$top"
  done
  ldconfig
  # Check that the hiding worked before trusting the result.
  local leaked=0
  while IFS= read -r path; do
    if [ -e "$path" ] || [ -L "$path" ]; then say "still visible: $path"; leaked=1; fi
  done <"$list"
  for path in /usr/bin/qemu-pr-helper /usr/bin/qemu-system-x86_64 /usr/lib/libmpathpersist.so.0 \
              /lib/x86_64-linux-gnu/libmpathpersist.so.0 /usr/lib/x86_64-linux-gnu/libmpathpersist.so.0; do
    if [ -e "$path" ]; then say "still visible: $path"; leaked=1; fi
  done
  if ldconfig -p | grep -q 'libmpath'; then say "ld.so.cache still lists libmpath*"; leaked=1; fi
  [ "$leaked" = 0 ] || exit 125
  say "hidden: $(wc -l <"$list") paths, e.g. $(grep -E 'libmpathpersist|qemu-pr-helper|qemu-system-x86_64$' "$list" | tr '\n' ' ')"

  cd "$ROOT"
  unset QEMU_PR_HELPER_MPATH_LIBRARY
  # package.json's test command, minus its build step, with a TAP copy for the summary.
  local cmd
  if [ $# -gt 0 ]; then
    cmd="node --test --test-concurrency=1 --test-reporter=spec --test-reporter-destination=stdout --test-reporter=tap --test-reporter-destination=\"\$HERMETIC_TAP_FILE\" $*"
  else
  cmd="$(node -e '
    const test = JSON.parse(require("fs").readFileSync("package.json", "utf8")).scripts.test;
    const run = test.split("&&").map((s) => s.trim()).find((s) => /^node\s+--test\b/.test(s));
    if (!run) { console.error("no `node --test` step in the test script: " + test); process.exit(1); }
    process.stdout.write(run.replace(/^node\s+--test\b/, "node --test --test-reporter=spec --test-reporter-destination=stdout --test-reporter=tap --test-reporter-destination=\"$HERMETIC_TAP_FILE\""));
  ')"
  fi
  say "running: $cmd"
  HERMETIC_TAP_FILE="$tap" sh -c "$cmd" || true   # the verdict comes from the TAP report below
}

if [ "${1:-}" = "--inside" ]; then
  shift
  inside "$@"
  exit 0
fi

[ "$(id -u)" = 0 ] || { say "needs root (overlayfs whiteouts in a private mount namespace)"; exit 125; }
command -v unshare >/dev/null || { say "unshare (util-linux) is missing"; exit 125; }
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || { say "the kernel has no overlayfs"; exit 125; }

scratch="$(mktemp -d /tmp/hermetic.XXXXXX)"
list="$scratch.list"
tap="${HERMETIC_TAP:-$scratch.tap}"
cleanup() { rmdir "$scratch" 2>/dev/null || true; rm -f "$list"; [ -n "${HERMETIC_TAP:-}" ] || rm -f "$scratch.tap"; }
trap cleanup EXIT

# Every file (not directory) of the hidden packages, with directory symlinks resolved
# (/lib -> /usr/lib, /sbin -> /usr/sbin), plus the named paths.
{
  for pkg in "${HIDE_PACKAGES[@]}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      say "hiding package $pkg"
      dpkg -L "$pkg"
    else
      say "package $pkg is not installed (nothing to hide)"
    fi
  done
  for g in "${HIDE_GLOBS[@]}"; do [ -e "$g" ] || [ -L "$g" ] && echo "$g"; done
} | {
  declare -A real=()
  while IFS= read -r p; do
    [ "${p#/}" != "$p" ] || continue                      # dpkg's "diverted by" notes
    { [ -L "$p" ] || [ -e "$p" ]; } && [ ! -d "$p" ] || continue   # files and symlinks, not dirs
    d="${p%/*}"
    [ -n "${real[$d]:-}" ] || real[$d]="$(readlink -f "$d")"
    echo "${real[$d]}/${p##*/}"
  done
} | sort -u >"$list"

while IFS= read -r p; do
  ok=0
  for top in "${TOPS[@]}"; do case "$p" in "$top"/*) ok=1 ;; esac; done
  [ "$ok" = 1 ] || { say "cannot hide $p (outside ${TOPS[*]})"; exit 125; }
done <"$list"

say "building"
(cd "$ROOT" && npm run --silent build) # tsc and the bundle, as shipped

rm -f "$tap"
unshare --mount --propagation private -- "$0" --inside "$list" "$scratch" "$tap" "$@"

# The verdict, from the TAP report: counts, every skip with its reason, failures.
[ -s "$tap" ] || { say "no TAP report at $tap (the tests did not run)"; exit 1; }
node - "$tap" <<'EOF'
const lines = require('fs').readFileSync(process.argv[2], 'utf8').split('\n');
const count = (k) => Number((lines.find((l) => l.startsWith(`# ${k} `)) ?? '').split(' ')[2] ?? NaN);
const stack = []; // enclosing suites, by indentation (4 spaces a level)
const skips = [];
const failures = [];
for (const line of lines) {
  const sub = /^(\s*)# Subtest: (.*)$/.exec(line);
  if (sub) { const level = sub[1].length / 4; stack.length = level; stack[level] = sub[2]; continue; }
  const m = /^(\s*)(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b ?(.*))?$/.exec(line);
  if (!m) continue;
  const name = [...stack.slice(0, m[1].length / 4), m[3]].join(' > ');
  if (m[4] === 'SKIP') skips.push({ name, reason: (m[5] ?? '').trim() });
  else if (m[2] === 'not ok' && m[4] !== 'TODO') failures.push(name);
}
const [tests, pass, fail, cancelled] = ['tests', 'pass', 'fail', 'cancelled'].map(count);
console.log(`\nhermetic: tests ${tests}, pass ${pass}, fail ${fail}, cancelled ${cancelled}; skipped ${skips.length} (tests and whole suites)`);
for (const s of skips) console.log(`hermetic: skipped: ${s.name}: ${s.reason || '(NO REASON GIVEN)'}`);
for (const f of failures) console.log(`hermetic: FAILED: ${f}`);
const reasonless = skips.filter((s) => s.reason === '');
let bad = false;
if (!(tests > 0)) { console.log('hermetic: no tests ran'); bad = true; }
if (fail > 0 || cancelled > 0 || failures.length > 0) bad = true;
if (reasonless.length > 0) { console.log('hermetic: a test that skips must say why'); bad = true; }
console.log(bad ? 'hermetic: FAILED (with multipath-tools, QEMU and the C helper hidden)' : 'hermetic: OK (with multipath-tools, QEMU and the C helper hidden)');
process.exit(bad ? 1 : 0);
EOF
