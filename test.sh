#!/usr/bin/env bash
# The whole test suite: lint, unit, integration, molecule and end-to-end lab tests.
# Installs what the tests need (as ./setup.sh --deps-only --dev does), then runs pytest.
# Usage: ./test.sh [pytest arguments, e.g. -k partition or -m "not lab"]
# Two pytest-xdist workers by default, each building labs of its own name (tests/conftest.py), a test file on
# one worker (--dist loadfile); TEST_WORKERS=1 runs the suite in one process, TEST_WORKERS=3 or 4 on more.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --deps-only --dev
workers="${TEST_WORKERS:-2}"
case "$workers" in
  1) exec .venv/bin/python -m pytest "$@" ;;
  [2-4]) exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@" ;;
  *) echo "ERROR: TEST_WORKERS=$workers: use 1 to 4" >&2; exit 2 ;;
esac
