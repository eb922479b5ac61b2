#!/bin/bash
# SPDX-License-Identifier: MIT
# Install the built package the way an operator does and check it works:
#   bash contrib/check-deb.sh [OUTDIR]      (default build-deb; as root)
# `apt install ./certfs_*.deb`, then the installed daemon, manual pages and
# unit, and a mount from an fstab line of type fuse.certfs (mount.fuse3
# finding certfs in /usr/sbin) that issues a certificate and unmounts cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build-deb}
debs=("$out"/certfs_*.deb)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "$(realpath "${debs[0]}")"

/usr/sbin/certfs --version
# Minimal images tell dpkg not to unpack manual pages and docs: look in the
# package rather than on the disk.
contents=$(dpkg-deb -c "${debs[0]}")
for f in /usr/share/man/man8/certfs.8.gz /usr/share/man/man5/certfs.conf.5.gz \
	/usr/share/doc/certfs/examples/certfs.conf /lib/systemd/system/certfs.service; do
	grep -q "\.$f\$" <<<"$contents" || { echo "check-deb: $f not in the package" >&2; exit 1; }
done
systemd-analyze verify --man=no /lib/systemd/system/certfs.service

tmp=$(mktemp -d)
cleanup() {
	umount -l "$tmp/mnt" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/mnt" "$tmp/store"
: > "$tmp/certfs.conf"
# The fstab line of certfs(8). mount(8) gives its helper a minimal PATH:
# the package's /usr/sbin must do.
printf '%s %s fuse.certfs allow_other,config=%s 0 0\n' "$tmp/store" "$tmp/mnt" \
	"$tmp/certfs.conf" > "$tmp/fstab"
env -i mount -a -T "$tmp/fstab"
pid=$(pgrep -f -n "certfs $tmp/store $tmp/mnt")
mkdir "$tmp/mnt/example.com"
for _ in $(seq 200); do
	grep -q '^example.com valid local' "$tmp/mnt/status" && break
	sleep 0.1
done
grep '^example.com valid local' "$tmp/mnt/status"
openssl x509 -noout -subject -in "$tmp/mnt/example.com/fullchain.pem"
umount "$tmp/mnt"
for _ in $(seq 200); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
	echo "check-deb: certfs $pid still running after umount" >&2
	exit 1
fi
echo "check-deb: package installed and working"
