#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install
# mmpcm with its dependencies. Safe to rerun: it reinstalls only when
# setup.py changed. Override the torch pair with TORCH_PACKAGES.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${MMPCM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_PACKAGES="${TORCH_PACKAGES:-torch==2.14.1 torchvision==0.29.1}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.mmpcm-installed"
WANT="$(cat "$ROOT/setup.py" | sha256sum | cut -d' ' -f1) $TORCH_PACKAGES"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q $TORCH_PACKAGES
    "$VENV/bin/python" -m pip install -q -e "$ROOT[tests]"
    echo "$WANT" > "$STAMP"
fi
