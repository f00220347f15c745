#!/usr/bin/env bash
# The quick start's main job, offline: install, build the toy world (caption
# corpus -> defective synthetic images -> CLIP features, scores, concepts),
# train PCM-Net on it with the paper's recipe at toy width, test on real
# renders of held-out scenes, and print the scores and a few captions.
# Extra arguments go to projects/toyworld/tools/run.py (e.g. --small).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
VENV="${MMPCM_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
exec "$VENV/bin/python" projects/toyworld/tools/run.py "$@"
