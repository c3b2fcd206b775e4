#!/usr/bin/env bash
# test/tools/fetch-qemu-10.sh -- QEMU 10.0, the client of Debian 13 and bookworm-backports
# (issue 15 item 5), extracted beside the system's QEMU for the tests; nothing is installed
# with dpkg and the system's /usr/bin/qemu-system-x86_64 (Debian 12: 7.2) stays as it is.
#
# Pinned: bookworm-backports' build of 1:10.0.2+ds-2+deb13u1~bpo12+1 (built against
# bookworm, so its libraries are bookworm's; trixie's build wants a newer libc). The .deb
# files of qemu-system-x86, qemu-system-common, qemu-system-data and of the seabios it
# requires (>> 1.16.3-1~, bookworm has 1.16.2) are fetched with `apt-get download` through a
# temporary apt configuration that knows only bookworm-backports (own sources.list, lists and
# cache: the system's apt state is not touched; the index is authenticated by apt with
# debian-archive-keyring), their SHA256 checked against the pins below, which must also be
# the index's; then `dpkg-deb -x` into $PRH_QEMU10_DIR (default /opt/qemu-10.0):
#
#   $PRH_QEMU10_DIR/usr/bin/qemu-system-x86_64
#       run with  -L $PRH_QEMU10_DIR/usr/share/qemu -L $PRH_QEMU10_DIR/usr/share/seabios
#       and QEMU_MODULE_DIR=$PRH_QEMU10_DIR/usr/lib/x86_64-linux-gnu/qemu (else it would look
#       for its modules among the system QEMU's, which are 7.2's); test/support/qemu-clients.ts
#
# If a pinned version has left the index (superseded), its pool file is fetched directly from
# deb.debian.org and checked against the same pins. Shared libraries the binary cannot find
# (`ldd`) are installed from the system's own (bookworm) sources: the library packages of
# the pinned Depends that are not installed. On Debian 12 with qemu-system-x86 7.2 installed
# there are none.
# Idempotent: a tree whose stamp lists the same pins is left alone. Root only. Prints where
# everything is. Environment: PRH_QEMU10_DIR, PRH_QEMU10_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

DEST=${PRH_QEMU10_DIR:-/opt/qemu-10.0}
MIRROR=${PRH_QEMU10_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm-backports
QV='1:10.0.2+ds-2+deb13u1~bpo12+1'
# package version pool-path sha256 (from bookworm-backports' main/binary-amd64 Packages)
PINS=(
  "qemu-system-x86 $QV pool/main/q/qemu/qemu-system-x86_10.0.2+ds-2+deb13u1~bpo12+1_amd64.deb 4a6b1856c8b0d7df4ff8e70249e12c473ccf8d516aadb4ae14d3d938faed0c65"
  "qemu-system-common $QV pool/main/q/qemu/qemu-system-common_10.0.2+ds-2+deb13u1~bpo12+1_amd64.deb 23a4672a138832d7173855e981aa8282c73ef5e04e080fa7ada9f82c6b34f507"
  "qemu-system-data $QV pool/main/q/qemu/qemu-system-data_10.0.2+ds-2+deb13u1~bpo12+1_all.deb 2d831088187087013b3fcbd19bdfb955b182a2d5a08f6dafa0ad1c6d2007fb4e"
  "seabios 1.16.3-2~bpo12+1 pool/main/s/seabios/seabios_1.16.3-2~bpo12+1_all.deb 48390d0a534c66d11789e39518aa219773a9d3677b29fe1af8799dfb563ec713"
)
BIN=$DEST/usr/bin/qemu-system-x86_64
STAMP=$DEST/.pins

say() { echo "fetch-qemu-10: $*" >&2; }
where() {
  say "QEMU $("$BIN" --version | head -1 | sed 's/^QEMU emulator version //')"
  say "  binary:   $BIN"
  say "  firmware: -L $DEST/usr/share/qemu -L $DEST/usr/share/seabios"
  say "  modules:  QEMU_MODULE_DIR=$DEST/usr/lib/x86_64-linux-gnu/qemu"
}

pins_text=$(printf '%s\n' "${PINS[@]}")
if [ -x "$BIN" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$pins_text" ]; then
  say "already in $DEST (pins unchanged)"
  where
  exit 0
fi
[ "$(id -u)" = 0 ] || { say "must run as root (writes $DEST)"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" >"$work/sources.list"
APT=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$work/lists"
     -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
say "reading the $SUITE index from $MIRROR"
apt-get "${APT[@]}" -q update >&2
index=$work/Packages
for f in "$work"/lists/*_Packages*; do /usr/lib/apt/apt-helper cat-file "$f"; echo; done >"$index"

# index_sha PACKAGE VERSION: the index's SHA256 of that exact version, or nothing
index_sha() {
  awk -v p="Package: $1" -v v="Version: $2" 'BEGIN{RS="";FS="\n"}
    { hp=0; hv=0; s=""; for (i=1;i<=NF;i++) { if ($i==p) hp=1; if ($i==v) hv=1; if ($i ~ /^SHA256: /) s=substr($i,9) }
      if (hp && hv) { print s; exit } }' "$index"
}

deps=()
for pin in "${PINS[@]}"; do
  read -r pkg ver path sha <<<"$pin"
  deb=$work/debs/${path##*/}
  listed=$(index_sha "$pkg" "$ver")
  if [ -n "$listed" ]; then
    [ "$listed" = "$sha" ] || { say "$pkg $ver: the index says SHA256 $listed, the pin $sha"; exit 1; }
    (cd "$work/debs" && apt-get "${APT[@]}" -q download "$pkg=$ver" >&2)
    mv "$work/debs/${pkg}_"*.deb "$deb" 2>/dev/null || true
  else
    say "$pkg $ver is no longer in the $SUITE index: fetching the pinned pool file"
    curl -fsS --retry 3 -o "$deb" "$MIRROR/$path"
  fi
  echo "$sha  $deb" | sha256sum -c --quiet - || { say "$pkg $ver: SHA256 mismatch"; exit 1; }
  say "$pkg $ver: SHA256 $sha OK"
  dpkg-deb -x "$deb" "$work/root"
  dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -n 's/^ *\(lib[^ |]*\).*/\1/p' >>"$work/deps"
done

# Shared libraries: the system's (bookworm) packages of the Depends, where ldd misses one.
if ldd "$work/root/usr/bin/qemu-system-x86_64" | grep -q 'not found'; then
  ldd "$work/root/usr/bin/qemu-system-x86_64" | grep 'not found' >&2
  while read -r lib; do
    dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q 'ok installed' || deps+=("$lib")
  done < <(sort -u "$work/deps")
  say "installing from the system's sources: ${deps[*]:-(none: the libraries above are not in its Depends)}"
  [ ${#deps[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${deps[@]}" >&2
  if ldd "$work/root/usr/bin/qemu-system-x86_64" | grep 'not found' >&2; then
    say "qemu-system-x86_64 still misses the libraries above"
    exit 1
  fi
fi
"$work/root/usr/bin/qemu-system-x86_64" --version | grep -q '^QEMU emulator version 10\.0\.' ||
  { say "the extracted binary does not run as QEMU 10.0"; exit 1; }

printf '%s\n' "$pins_text" >"$work/root/.pins"
chmod 755 "$work/root"
rm -rf "$DEST.old"
[ ! -e "$DEST" ] || mv "$DEST" "$DEST.old"
mkdir -p "$(dirname "$DEST")"
mv "$work/root" "$DEST"
rm -rf "$DEST.old"
say "extracted into $DEST"
where
