#!/usr/bin/env bash
# The whole test suite: lint, unit, integration, molecule and end-to-end lab tests.
# Installs what the tests need (as ./setup.sh --deps-only --dev does), then runs pytest.
# Usage: ./test.sh [pytest arguments, e.g. -k partition or -m "not lab"]
# TEST_WORKERS=N (1 to 4) runs N pytest-xdist workers, each building labs of its own name (tests/conftest.py),
# a test file on one worker (--dist loadfile).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --deps-only --dev
workers="${TEST_WORKERS:-1}"
case "$workers" in
  1) exec .venv/bin/python -m pytest "$@" ;;
  [2-4]) exec .venv/bin/python -m pytest -n "$workers" --dist loadfile "$@" ;;
  *) echo "ERROR: TEST_WORKERS=$workers: use 1 to 4" >&2; exit 2 ;;
esac
