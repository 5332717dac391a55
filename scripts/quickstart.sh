#!/usr/bin/env bash
# Setup + quickstart: creates .venv, runs experiments/quickstart.yaml on a local Ray
# cluster with a local MLflow store (runs/mlflow.db), and prints the results table.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup_env.sh
.venv/bin/sassl run experiments/quickstart.yaml "$@"
echo "[quickstart] done in $(( $(date +%s) - start )) s; browse the runs with:"
echo "  .venv/bin/sassl ui    # then open the address it prints (on the runs)"
