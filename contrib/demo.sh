#!/bin/bash
# SPDX-License-Identifier: MIT
# Set up certfs and mount it with the embedded defaults (local directory
# store in /var/lib/certfs, local CA issuer) on MOUNTPOINT (default
# /mnt/certfs). Then: mkdir /mnt/certfs/example.com; cat /mnt/certfs/example.com/fullchain.pem
set -euo pipefail
cd "$(dirname "$0")/.."
mnt=${1:-/mnt/certfs}

bash contrib/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
mkdir -p "$mnt"
if grep -q " $mnt fuse.certfs " /proc/self/mounts; then
	fusermount3 -u "$mnt"
fi
build/daemon/certfs "$mnt"
echo "certfs is mounted on $mnt (store /var/lib/certfs, local CA)."
echo "Try:  mkdir $mnt/example.com && cat $mnt/example.com/fullchain.pem"
echo "Stop: fusermount3 -u $mnt"
