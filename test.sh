#!/usr/bin/env bash
# The whole test suite: lint, unit, integration, molecule and end-to-end lab tests.
# Installs what the tests need (as ./setup.sh --deps-only --dev does), then runs pytest.
# Usage: ./test.sh [pytest arguments, e.g. -k partition or -m "not lab"]
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh --deps-only --dev
exec .venv/bin/python -m pytest "$@"
