#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs the certfs benchmark suite: installs what it needs, builds a release
# certfs in BUILDDIR (default build-bench), builds the C load generator
# next to it, then runs every benchmark and prints each figure beside its
# baseline from the same run. Root is required (FUSE mounts, nginx -t).
# These are benchmarks, not tests: nothing here fails on a slow figure.
#
#   bash tests/bench/run.sh [BUILDDIR] [-- BENCH.PY OPTIONS]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
builddir="build-bench"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
	builddir="$1"
	shift
fi
[ "${1:-}" = "--" ] && shift
case "$builddir" in
/*) ;;
*) builddir="$root/$builddir" ;;
esac

if [ "$(id -u)" -ne 0 ]; then
	echo "run.sh: the benchmarks mount FUSE filesystems and need root" >&2
	exit 1
fi

cd "$root"
bash contrib/install-deps.sh >&2
if [ ! -f "$builddir/build.ninja" ]; then
	meson setup "$builddir" -Dbuildtype=release >&2
fi
ninja -C "$builddir" >&2
cc -O2 -pthread -o "$builddir/readbench" "$here/readbench.c"

# Debian's python3 (with python3-cryptography), whatever python3 is on PATH.
exec /usr/bin/python3 "$here/bench.py" \
	--certfs "$builddir/daemon/certfs" --readbench "$builddir/readbench" "$@"
