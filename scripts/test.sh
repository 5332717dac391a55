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
exec .venv/bin/python -m pytest -q "$@"
