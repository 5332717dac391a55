#!/usr/bin/env bash
# Creates ./.venv (Python 3.11) and installs sassl with its test and docs extras, once.
# Re-running is cheap: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.sassl-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing sassl and its dependencies (torch ~1-2 min from the local wheel cache)"
  if ! .venv/bin/pip install --quiet -e '.[test,docs]' > .venv/install.log 2>&1; then
    tail -n 30 .venv/install.log; echo "[setup] pip install failed; full log in .venv/install.log" >&2; exit 1
  fi
  touch "$stamp"
fi
