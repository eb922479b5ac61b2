#!/bin/bash
# SPDX-License-Identifier: MIT
# Build the Debian package from this checkout and check it with lintian.
#   bash contrib/build-deb.sh [OUTDIR]      (default build-deb)
# Builds in a temporary copy of the tracked (and new, not ignored) files, so
# build directories never end up in the package, and leaves
# OUTDIR/certfs_*.deb. Fails on any lintian error.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-deb}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/certfs" "$out"
git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	tar --null -T - -cf - | tar -C "$work/certfs" -xf -
(cd "$work/certfs" && dpkg-buildpackage -us -uc -b)
lintian --fail-on error --tag-display-limit 0 "$work"/certfs_*.changes
rm -f "$out"/certfs_*.deb
cp "$work"/certfs_*.deb "$out"/
ls "$out"/certfs_*.deb
