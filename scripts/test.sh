#!/usr/bin/env bash
# Fresh machine: set up, lint, format check, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Two pytest-xdist workers, one test module each at a time (modules share their compiled
# programs between tests): the suite is mostly single-threaded XLA compilation, so on a 2-core
# machine two workers finish it in about half the time.  CFMIMO_TEST_WORKERS=0 runs
# it in one process.
.venv/bin/python -m pytest -q -n "${CFMIMO_TEST_WORKERS:-2}" --dist loadfile "$@"
