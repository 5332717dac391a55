#!/usr/bin/env bash
# Creates .venv if needed, then runs the whole test suite (unit + end-to-end on real Ray/MLflow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# the UI test drives Debian's headless Chromium: only the tests need it, so only this script
# installs it, once, when it may (root + apt); without it that one test is skipped
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[test] installing Debian chromium for the MLflow UI test (~30 s)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) > .venv/apt.log 2>&1 \
    || echo "[test] chromium install failed (see .venv/apt.log); the UI screenshot test will be skipped" >&2
fi
# two pytest-xdist workers by default, whole files each (a module's fixtures are built once, and
# each worker has its own shared Ray head): the unit tests keep one core busy and the Ray
# end-to-end files not quite two, so a second worker fills the idle core (docs/measurements.md,
# test suite). SASSL_TEST_WORKERS=0 runs everything in this one process, one test at a time.
exec .venv/bin/python -m pytest -q -n "${SASSL_TEST_WORKERS:-2}" --dist loadfile "$@"
