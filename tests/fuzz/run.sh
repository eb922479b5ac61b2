#!/bin/bash
# SPDX-License-Identifier: MIT
# Build the libFuzzer targets with clang (ASan + UBSan) and run each one for
# a fixed number of executions from its seed corpus. -timeout makes an input
# that takes too long a failure (every upload is judged with bounded work),
# as is any crash, leak or sanitizer report. New inputs go to a scratch
# directory, never into the committed seeds.
#   bash tests/fuzz/run.sh [BUILDDIR]     (FUZZ_RUNS scales the counts)
set -euo pipefail
cd "$(dirname "$0")/../.."
builddir=${1:-build-fuzz}
scale=${FUZZ_RUNS:-1}

# target and executions: the PKCS#12 and key targets run password-based key
# derivations (up to the caps), so they get fewer.
targets="fuzz_chain:10000 fuzz_key:4000 fuzz_csr:10000 fuzz_pkcs12:3000
fuzz_name:100000 fuzz_acme_json:30000 fuzz_conf:20000"

if [ ! -f "$builddir/build.ninja" ]; then
	CC=clang meson setup "$builddir" -Dfuzz=true -Dintegration=false \
		-Db_sanitize=address,undefined -Db_lundef=false
fi
names=""
for t in $targets; do names="$names tests/fuzz/${t%%:*}"; done
# shellcheck disable=SC2086
ninja -C "$builddir" $names

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in $targets; do
	name=${t%%:*}
	runs=$(( ${t##*:} * scale ))
	mkdir -p "$scratch/$name"
	start=$(date +%s)
	if "$builddir/tests/fuzz/$name" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -artifact_prefix="$scratch/$name-" \
		"$scratch/$name" "tests/fuzz/corpus/$name" \
		>"$scratch/$name.log" 2>&1; then
		echo "fuzz: $name: $runs executions, $(( $(date +%s) - start ))s, ok"
	else
		echo "fuzz: $name: FAILED"
		tail -n 40 "$scratch/$name.log"
		# The input that failed, kept for a unit test or a new seed.
		mkdir -p "$builddir/fuzz-failures"
		cp -f "$scratch/$name"-* "$builddir/fuzz-failures/" 2>/dev/null || true
		status=1
	fi
done
exit $status
