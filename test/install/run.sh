#!/usr/bin/env bash
# The install paths of README "Installing", each checked as an operator would use it:
#
#   test/install/run.sh [npm] [deb]        (both by default; as root; needs the dev
#                                           dependencies for npm pack, the npm registry,
#                                           qemu-system-x86, dpkg-dev and lintian)
#
# npm: npm pack, then npm install -g of the tarball into a temporary prefix: both commands
#   and both manual pages are there, the tarball ships only what runs, and the real QEMU
#   client connects to the installed helper started as root.
# deb: contrib/debian/build.sh, lintian (no errors or warnings), dpkg -i: the package
#   diverts QEMU's /usr/bin/qemu-pr-helper and its manual page, the real QEMU client
#   connects to /usr/bin/qemu-pr-helper; dpkg -r, then dpkg -i and dpkg --purge: the C
#   helper is back, byte for byte, each time.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(npm deb)

QEMU=/usr/bin/qemu-system-x86_64
[ "$(id -u)" -eq 0 ] || { echo "install tests: run as root" >&2; exit 1; }
[ -x "$QEMU" ] || { echo "install tests: $QEMU missing (apt-get install qemu-system-x86)" >&2; exit 1; }

failures=0
pass() { echo "ok - $*"; }
fail() { echo "not ok - $*"; failures=$((failures + 1)); }
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

# Root-owned scratch space, mode 0700; removed at exit.
work=$(mktemp -d /tmp/qemu-pr-helper-install.XXXXXX)
helper_pid=
cleanup() {
  if [ -n "$helper_pid" ]; then kill -TERM "$helper_pid" 2>/dev/null || true; fi
  if dpkg-query -W -f='${Status}' qemu-pr-helper-ts 2>/dev/null | grep -q installed; then
    dpkg --purge qemu-pr-helper-ts >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# qemu_connects HELPER: starts HELPER -k SOCKET as root, runs QEMU with
# -object pr-manager-helper on that socket and asks query-pr-managers over QMP, then stops
# the helper with SIGTERM (exit status 0, socket removed).
qemu_connects() {
  local helper=$1 sock=$work/pr-helper.sock log=$work/helper.log out
  rm -f "$sock"
  "$helper" -k "$sock" 2>"$log" &
  helper_pid=$!
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
  if [ ! -S "$sock" ]; then
    echo "# $helper did not listen on $sock:"; sed 's/^/#   /' "$log"
    kill -TERM "$helper_pid" 2>/dev/null || true; wait "$helper_pid" || true; helper_pid=
    return 1
  fi
  out=$(printf '%s\n' '{"execute":"qmp_capabilities"}' '{"execute":"query-pr-managers"}' '{"execute":"quit"}' |
    timeout 60 "$QEMU" -machine none -nodefaults -display none -S \
      -object "pr-manager-helper,id=pr0,path=$sock" -qmp stdio 2>&1) || true
  kill -TERM "$helper_pid"
  local status=0
  wait "$helper_pid" || status=$?
  helper_pid=
  # The second reply, query-pr-managers's, must be [{id: pr0, connected: true}].
  if ! node -e '
    const replies = process.argv[1].split("\n").filter((l) => l.includes("\"return\"")).map((l) => JSON.parse(l).return);
    process.exit(JSON.stringify(replies[1]) === JSON.stringify([{ connected: true, id: "pr0" }]) ? 0 : 1);' "$out"; then
    echo "# QEMU did not report a connected pr-manager:"; sed 's/^/#   /' <<<"$out"; return 1
  fi
  [ "$status" -eq 0 ] || { echo "# helper exited $status after SIGTERM:"; sed 's/^/#   /' "$log"; return 1; }
  [ ! -e "$sock" ] || { echo "# helper left $sock behind"; return 1; }
}

# The tarball, built as npm publish would (npm pack runs "prepare": tsc).
echo "# npm pack"
tarball=$work/$(cd "$repo" && npm pack --silent --pack-destination "$work" 2>/dev/null | tail -n 1)
[ -f "$tarball" ] || { echo "install tests: npm pack made no tarball" >&2; exit 1; }

contents=$(tar -tzf "$tarball")
check "tarball has dist/src/cli/main.js" grep -qx 'package/dist/src/cli/main.js' <<<"$contents"
check "tarball has dist/src/cli/entry.cjs (what bin/ runs)" grep -qx 'package/dist/src/cli/entry.cjs' <<<"$contents"
check "tarball has dist/src/cli/main.bundle.cjs (scripts/bundle.mjs)" grep -qx 'package/dist/src/cli/main.bundle.cjs' <<<"$contents"
check "tarball has both manual pages" \
  test "$(grep -cxE 'package/docs/man/qemu-pr-helper(\.8|-client\.1)' <<<"$contents")" -eq 2
man_warnings() { # groff's and man's warnings about the manual pages: none
  local page out=
  for page in docs/man/qemu-pr-helper.8 docs/man/qemu-pr-helper-client.1; do
    out+=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  done
  [ -z "$out" ] || { sed 's/^/#   /' <<<"$out"; return 1; }
}
check "man --warnings -l: the manual pages format without warnings" man_warnings
check "tarball has no tests, CI, e2e harness, TypeScript sources or source maps" \
  bash -c '! grep -E "^package/(\.ci|test|bench|src|dist/test|dist/bench)/|\.map$|\.ts$" -' <<<"$contents"

for path in "${paths[@]}"; do
  case $path in
  npm)
    echo "# npm install -g --prefix PREFIX $(basename "$tarball")"
    prefix=$work/prefix
    mkdir -m 0755 "$prefix"
    npm install -g --prefix "$prefix" --no-audit --no-fund --loglevel=error "$tarball" >/dev/null
    check "npm: qemu-pr-helper --version" bash -c "'$prefix/bin/qemu-pr-helper' --version | grep -q '(qemu-pr-helper-ts)'"
    check "npm: qemu-pr-helper-client --version" bash -c "PATH='$prefix/bin':\$PATH qemu-pr-helper-client --version | grep -q '(qemu-pr-helper-ts)'"
    check "npm: man pages linked into PREFIX/share/man" \
      bash -c "MANPATH='$prefix/share/man' man -w qemu-pr-helper-client >/dev/null && [ -e '$prefix/share/man/man8/qemu-pr-helper.8' ]"
    check "npm: no dev dependencies installed" \
      bash -c "! ls '$prefix/lib/node_modules/qemu-pr-helper-ts/node_modules' | grep -qE 'typescript|fast-check|@types'"
    check "npm: QEMU connects to the installed helper (started as root)" qemu_connects "$prefix/bin/qemu-pr-helper"
    ;;
  deb)
    echo "# contrib/debian/build.sh"
    deb=$(contrib/debian/build.sh "$tarball" "$work/deb")
    echo "# lintian $(basename "$deb")"
    if lintian --fail-on error,warning "$deb"; then pass "deb: lintian reports no errors or warnings"
    else fail "deb: lintian reports no errors or warnings"; fi
    c_helper=/usr/bin/qemu-pr-helper
    c_sum=
    if dpkg -S "$c_helper" 2>/dev/null | grep -q '^qemu-system-common:'; then
      c_sum=$(sha256sum <"$c_helper")
    else
      echo "# qemu-system-common's $c_helper is not installed: the diversion is checked without it"
    fi
    for removal in -r --purge; do
      echo "# dpkg -i $(basename "$deb"), then dpkg $removal"
      dpkg -i "$deb" >/dev/null
      check "deb: /usr/bin/qemu-pr-helper --version is ours" \
        bash -c "/usr/bin/qemu-pr-helper --version | grep -q '(qemu-pr-helper-ts)'"
      check "deb: qemu-pr-helper-client on PATH" bash -c "qemu-pr-helper-client --version | grep -q '(qemu-pr-helper-ts)'"
      check "deb: diversions by qemu-pr-helper-ts" \
        bash -c "[ \"\$(dpkg-divert --truename /usr/bin/qemu-pr-helper)\" = /usr/bin/qemu-pr-helper.qemu ] && dpkg-divert --listpackage /usr/share/man/man8/qemu-pr-helper.8.gz | grep -qx qemu-pr-helper-ts"
      if [ -n "$c_sum" ]; then
        check "deb: QEMU's helper kept as /usr/bin/qemu-pr-helper.qemu" \
          bash -c "[ \"\$(sha256sum </usr/bin/qemu-pr-helper.qemu)\" = '$c_sum' ]"
      fi
      check "deb: man pages are ours" \
        bash -c "zgrep -q qemu-pr-helper-ts \"\$(man -w 8 qemu-pr-helper)\" && man -w 1 qemu-pr-helper-client | grep -q '^/usr/share/man/'"
      check "deb: units point at the package" \
        grep -qx 'ExecStart=/usr/lib/qemu-pr-helper-ts/bin/qemu-pr-helper' /lib/systemd/system/qemu-pr-helper.service
      check "deb: QEMU connects to /usr/bin/qemu-pr-helper (started as root)" qemu_connects /usr/bin/qemu-pr-helper
      dpkg "$removal" qemu-pr-helper-ts >/dev/null
      check "deb: after dpkg $removal, no diversion and no /usr/lib/qemu-pr-helper-ts" \
        bash -c "[ -z \"\$(dpkg-divert --listpackage /usr/bin/qemu-pr-helper)\" ] && [ ! -e /usr/lib/qemu-pr-helper-ts ]"
      if [ -n "$c_sum" ]; then
        check "deb: after dpkg $removal, /usr/bin/qemu-pr-helper is QEMU's again" \
          bash -c "[ \"\$(sha256sum </usr/bin/qemu-pr-helper)\" = '$c_sum' ] && [ ! -e /usr/bin/qemu-pr-helper.qemu ] && [ -e /usr/share/man/man8/qemu-pr-helper.8.gz ]"
      else
        check "deb: after dpkg $removal, /usr/bin/qemu-pr-helper is gone" test ! -e /usr/bin/qemu-pr-helper
      fi
    done
    ;;
  *) echo "install tests: unknown path '$path' (npm, deb)" >&2; exit 2 ;;
  esac
done

if [ "$failures" -gt 0 ]; then echo "# $failures install check(s) failed"; exit 1; fi
echo "# all install checks passed"
