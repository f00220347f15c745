#!/usr/bin/env bash
# Install what is missing (tools/setup_env.sh), then run the test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
VENV="${MMPCM_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest -q "$@"
