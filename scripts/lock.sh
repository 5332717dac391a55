#!/usr/bin/env bash
# Regenerates requirements.lock: the exact version of everything sassl installs (its dependencies
# and the test and docs extras) for Python 3.11 on Linux x86-64, resolved by pip-tools' pip-compile
# from pyproject.toml's ranges. Run it after changing a dependency in pyproject.toml, then run the
# tests (scripts/setup_env.sh installs from the lock) and commit both files together.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
tools=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$tools")"' EXIT
"$PY" -m venv "$tools"
"$tools/bin/pip" install --quiet "pip-tools>=7.4,<8"
# torch's CUDA build comes from pip's usual indexes; --strip-extras keeps the lock usable as a
# constraints file (pip -c refuses extras)
"$tools/bin/pip-compile" --quiet --strip-extras --extra test --extra docs --no-emit-index-url \
  --no-emit-find-links --output-file requirements.lock pyproject.toml
echo "requirements.lock: $(grep -c '==' requirements.lock) pinned packages"
