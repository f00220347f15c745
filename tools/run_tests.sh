#!/usr/bin/env bash
# Install what is missing (tools/setup_env.sh), then run the test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "${MMPCM_VENV:-$ROOT/.venv}/bin/python" -m pytest -q "$@"
