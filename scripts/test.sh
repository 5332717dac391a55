#!/usr/bin/env bash
# Creates .venv if needed, then runs the whole test suite (unit + end-to-end on real Ray/MLflow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -q "$@"
