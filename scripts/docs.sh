#!/usr/bin/env bash
# Serves the documentation site on http://127.0.0.1:8000 (reloads on edits), after regenerating
# the configuration and CLI references from the code. `bash scripts/docs.sh build` writes site/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m orchestrator.reference
if [ "${1:-serve}" = build ]; then
  exec .venv/bin/mkdocs build --strict
fi
exec .venv/bin/mkdocs serve --dev-addr 127.0.0.1:8000
