#!/usr/bin/env bash
# Run the whole test suite headless (Qt offscreen; Java/ImageJ and Xvfb tests included).
# pytest's exit code 5 (no tests collected) is turned into a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export QT_QPA_PLATFORM=offscreen
# a crash prints every thread's Python stack (CI once got SIGSEGV at the very end of the suite)
export PYTHONFAULTHANDLER=1
PY=${PYTHON:-python3}
$PY -m pytest -q -p no:cacheprovider "$@" tests
rc=$?
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
