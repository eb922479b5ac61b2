#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs everything certfs needs to build, run and test, from Debian 12's
# archive. Idempotent: packages already present are left alone, and apt's
# lists are refreshed only when something is missing.
set -eu

pkgs="build-essential meson ninja-build pkg-config
fuse3 libfuse3-dev libssl-dev openssl libcurl4-openssl-dev libinih-dev libjansson-dev
python3 python3-pytest python3-pytest-timeout python3-cryptography
libsystemd-dev systemd
pebble nginx-light haproxy etcd-server etcd-client lego faketime curl procps util-linux
ca-certificates gdb clang libclang-rt-14-dev rsync groff-base man-db prometheus
debhelper dpkg-dev fakeroot lintian"

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done

if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: need root to install:$missing" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# Servers are started by the tests themselves; keep the packages'
	# own services from grabbing the ports on install.
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	# shellcheck disable=SC2086
	apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends $missing
fi
