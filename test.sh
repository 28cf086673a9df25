#!/usr/bin/env bash
# The whole test suite: lint, unit, integration, molecule and end-to-end lab tests.
# Installs what the tests need (as ./setup.sh --deps-only --dev does), then runs pytest.
# Usage: ./test.sh [pytest arguments, e.g. -k partition or -m "not lab"]
# Two workers by default (pytest-xdist; TEST_WORKERS=1 for one): each builds labs of its own name, a test file
# of labs stays on one worker (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --deps-only --dev
workers="${TEST_WORKERS:-2}"
case "$workers" in
  1) exec .venv/bin/python -m pytest "$@" ;;
  [2-4]) exec .venv/bin/python -m pytest -n "$workers" --dist loadgroup "$@" ;;
  *) echo "ERROR: TEST_WORKERS=$workers: use 1 to 4" >&2; exit 2 ;;
esac
