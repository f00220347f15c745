#!/usr/bin/env bash
# The quick start's main job, offline: install, write the tiny built-in data
# set, train PCM-Net on it with tools/train.py and score it with tools/test.py.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
VENV="${MMPCM_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
PY="$VENV/bin/python"
WORK_DIR="${WORK_DIR:-work_dirs/pcm_smoke}"
"$PY" tools/data/make_smoke_data.py --out data/smoke
"$PY" tools/train.py configs/pcm/pcm_smoke.py --work-dir "$WORK_DIR"
"$PY" tools/test.py configs/pcm/pcm_smoke.py "$WORK_DIR/epoch_60.pth" \
    --work-dir "$WORK_DIR"
