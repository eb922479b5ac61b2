#!/bin/bash
# SPDX-License-Identifier: MIT
# Set up everything and run the whole test suite (unit + integration).
#   bash contrib/run-tests.sh [BUILDDIR [MESON-SETUP-OPTIONS...]]
# Installs dependencies (apt, as root), configures BUILDDIR (default
# build-test), builds, runs every test, and ends with one line
# "N passed, N failed". Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
builddir=${1:-build-test}
shift || true

bash contrib/install-deps.sh
if [ ! -f "$builddir/build.ninja" ]; then
	meson setup "$builddir" "$@"
else
	meson configure "$builddir" "$@" >/dev/null
fi
ninja -C "$builddir"

junit="$PWD/$builddir/pytest-junit.xml"
rm -f "$junit"
status=0
PYTEST_ADDOPTS="--junitxml=$junit" meson test -C "$builddir" --print-errorlogs \
	--num-processes 2 || status=$?

/usr/bin/python3 - "$builddir/meson-logs/testlog.json" "$junit" <<'PY'
import json, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t.get("name") == "integration":
        continue
    r = t.get("result")
    if r == "OK": passed += 1
    elif r == "SKIP": skipped += 1
    else: failed += 1
try:
    root = ET.parse(sys.argv[2]).getroot()
    for ts in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        n = int(ts.get("tests", 0)); f = int(ts.get("failures", 0)) + int(ts.get("errors", 0))
        s = int(ts.get("skipped", 0))
        passed += n - f - s; failed += f; skipped += s
except (OSError, ET.ParseError):
    pass
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
