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
  # torch's CUDA build and its nvidia libraries make the venv about 7 GB; on a full disk pip fails
  # half-way with "No space left on device" deep in its log, so say so before it starts
  need_gb=${SASSL_SETUP_NEED_GB:-8}
  free_gb=$(( $(df -Pk . | awk 'NR==2 {print $4}') / 1048576 ))
  if ! ls -d .venv/lib/python3*/site-packages/torch >/dev/null 2>&1 && [ "$free_gb" -lt "$need_gb" ]; then
    echo "[setup] only ${free_gb} GB free on $(df -P . | awk 'NR==2 {print $6}'); installing torch needs about ${need_gb} GB" \
      "(the venv is ~7 GB). Free some space (old clones' .venv folders, /tmp/pytest-of-$(id -un), /tmp/ray) and rerun." >&2
    exit 1
  fi
  echo "[setup] installing sassl and its dependencies (torch ~1-2 min from the local wheel cache)"
  if ! .venv/bin/pip install --quiet -e '.[test,docs]' > .venv/install.log 2>&1; then
    tail -n 30 .venv/install.log; echo "[setup] pip install failed; full log in .venv/install.log" >&2
    if grep -q "No space left on device" .venv/install.log; then
      echo "[setup] the disk filled up: $(df -Ph . | awk 'NR==2 {print $4}') free now; free some space and rerun" >&2
    fi
    exit 1
  fi
  touch "$stamp"
fi
