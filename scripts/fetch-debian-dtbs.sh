#!/usr/bin/env bash
# Fetch every arm64 DTB Debian's kernel package ships into DIR (default .cache/dtbs), flattened as
# vendor_board.dtb, with a dtc-derived expectation beside each (test/fixtures/dtb/make-expected.py).
# Needs root for apt (adds the arm64 architecture to dpkg, downloads one .deb, installs dtc).
set -euo pipefail
dir=${1:-.cache/dtbs}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v dtc >/dev/null || { apt-get update -qq && apt-get install -y -qq device-tree-compiler >/dev/null; }
dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64 && apt-get update -qq; }
pkg=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "no arm64 kernel image package found" >&2; exit 1; }
(cd "$work" && apt-get download "${pkg%:arm64}:arm64" >/dev/null)
dpkg-deb -x "$work"/*.deb "$work/x"
for f in "$work"/x/usr/lib/linux-image-*/*/*.dtb; do
  cp "$f" "$dir/$(basename "$(dirname "$f")")_$(basename "$f")"
done
(cd "$dir" && python3 "$here/test/fixtures/dtb/make-expected.py" "$dir"/*.dtb >/dev/null)
echo "$(ls "$dir"/*.dtb | wc -l) DTBs from $pkg in $dir"
