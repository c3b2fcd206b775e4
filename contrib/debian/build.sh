#!/bin/sh
# Builds the Debian package qemu-pr-helper-ts_VERSION_ARCH.deb with dpkg-deb from the npm
# tarball (npm pack) and the production dependencies pinned in package-lock.json:
#
#   contrib/debian/build.sh TARBALL OUTDIR
#
# Layout: the tree in /usr/lib/qemu-pr-helper-ts (bin/, dist/src/, node_modules/ with
# koffi), /usr/bin/qemu-pr-helper and qemu-pr-helper-client as symlinks into it (the
# preinst diverts QEMU's C helper to /usr/bin/qemu-pr-helper.qemu), the units in
# /lib/systemd/system, the manual pages in /usr/share/man. Needs dpkg-deb, dpkg-shlibdeps
# (dpkg-dev), npm and the npm registry (for koffi). Prints the path of the .deb.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -eq 2 ] || { echo "usage: $0 TARBALL OUTDIR" >&2; exit 2; }
tarball=$(readlink -f "$1")
outdir=$(readlink -f "$2")

stage=$(mktemp -d "${TMPDIR:-/tmp}/qemu-pr-helper-ts-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
lib=$pkg/usr/lib/qemu-pr-helper-ts
doc=$pkg/usr/share/doc/qemu-pr-helper-ts
mkdir -p "$lib" "$doc" "$pkg/usr/bin" "$pkg/usr/share/man/man1" "$pkg/usr/share/man/man8" \
  "$pkg/lib/systemd/system" "$pkg/DEBIAN"

tar -xzf "$tarball" --no-same-owner --strip-components=1 -C "$lib"
version=$(node -p 'require(process.argv[1]).version' "$lib/package.json")
arch=$(dpkg --print-architecture)

# Production dependencies only, as locked; no lifecycle scripts (the package's own
# "prepare" needs the dev dependencies; koffi loads its prebuilt module without its
# install script).
cp "$root/package-lock.json" "$lib/"
(cd "$lib" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
rm -f "$lib/package-lock.json" "$lib/node_modules/.package-lock.json"
# koffi's prebuilt module for musl systems cannot load on Debian (glibc); cnoke.cjs is its
# install script (build from source), not run; doc/ is its web documentation.
rm -rf "$lib"/node_modules/@koromix/*/musl_* "$lib/node_modules/koffi/cnoke.cjs" \
  "$lib/node_modules/koffi/doc"

# Manual pages, documentation and units to their Debian places.
gzip -9n < "$lib/docs/man/qemu-pr-helper.8" > "$pkg/usr/share/man/man8/qemu-pr-helper.8.gz"
gzip -9n < "$lib/docs/man/qemu-pr-helper-client.1" > "$pkg/usr/share/man/man1/qemu-pr-helper-client.1.gz"
rm -rf "$lib/docs/man"
for file in "$lib"/docs/*.md; do
  [ -f "$file" ] || continue
  gzip -9n < "$file" > "$doc/${file##*/}.gz"
  rm -f "$file"
done
rmdir "$lib/docs"
gzip -9n < "$lib/README.md" > "$doc/README.md.gz"
rm -f "$lib/README.md"
[ ! -f "$lib/LICENSE" ] || rm -f "$lib/LICENSE" # in copyright
cp "$here/copyright" "$doc/copyright"
sed "s/@VERSION@/$version/" "$here/changelog" | gzip -9n > "$doc/changelog.gz"
for unit in qemu-pr-helper.service qemu-pr-helper.socket; do
  sed -e 's|^ExecStart=/usr/local/lib/qemu-pr-helper-ts/|ExecStart=/usr/lib/qemu-pr-helper-ts/|' \
    -e 's|^# Adjust the path to where the tree is installed. |# |' \
    -e '/^\[Unit\]$/a Documentation=man:qemu-pr-helper(8)' \
    "$lib/contrib/systemd/$unit" > "$pkg/lib/systemd/system/$unit"
  grep -q '^ExecStart=/usr/lib/qemu-pr-helper-ts/\|^ListenStream=' "$pkg/lib/systemd/system/$unit" ||
    { echo "$0: $unit: no ExecStart= to rewrite" >&2; exit 1; }
done
rm -rf "$lib/contrib"
ln -s ../lib/qemu-pr-helper-ts/bin/qemu-pr-helper "$pkg/usr/bin/qemu-pr-helper"
ln -s ../lib/qemu-pr-helper-ts/bin/qemu-pr-helper-client "$pkg/usr/bin/qemu-pr-helper-client"

# Modes as Debian wants them, whatever the umask and the tarball said.
find "$pkg" -type d -exec chmod 0755 {} +
find "$pkg" -type f -exec chmod 0644 {} +
chmod 0755 "$lib/bin/qemu-pr-helper" "$lib/bin/qemu-pr-helper-client"

mkdir -p "$pkg/usr/share/lintian/overrides"
cp "$here/lintian-overrides" "$pkg/usr/share/lintian/overrides/qemu-pr-helper-ts"

# Shared libraries koffi's native module needs (libc6, libstdc++6, ...), by dpkg-shlibdeps,
# which wants a debian/control beside it.
mkdir -p "$stage/debian"
printf 'Source: qemu-pr-helper-ts\n\nPackage: qemu-pr-helper-ts\nArchitecture: any\n' > "$stage/debian/control"
shlibs=$(cd "$stage" && find "$pkg" -name '*.node' -type f -exec dpkg-shlibdeps -O {} + 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "$0: dpkg-shlibdeps found no dependencies for koffi's module" >&2; exit 1; }

for script in preinst postinst prerm postrm; do
  install -m 0755 "$here/$script" "$pkg/DEBIAN/$script"
done
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  -e "s/@SHLIBS@/$shlibs/" "$here/control.in" > "$pkg/DEBIAN/control"

mkdir -p "$outdir"
deb=$outdir/qemu-pr-helper-ts_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
echo "$deb"
