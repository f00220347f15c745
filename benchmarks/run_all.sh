#!/usr/bin/env bash
# Every GPU benchmark of docs/benchmarks.md in one go, each step under its
# own time limit, so that a machine held for a limited time returns what it
# measured. Results: OUT_DIR/<step>.json (the figures) and <step>.log.
#
# Usage: bash benchmarks/run_all.sh OUT_DIR [STEP ...]
#   steps, in the order given (default: train decode extract generate):
#     train     paper + fast recipe + the reference loop, 542,401 pairs;
#               each loop's last 5 iterations also as Chrome traces in
#               OUT_DIR/traces_train
#     decode    5,000 images, beam 3, fp32/bf16, KV cache on/off, profiled
#     extract   ViT-B/32 + ViT-L/14 from 512 px JPEGs, PIL workers and
#               decoding on the device
#     generate  SD v1.5 at 512 px: diffusers' default call vs mmpcm's
#               settings (no compiled row: compilation takes minutes)
#     refine    SynC refinement of 542,401 pairs, faiss on the GPU (needs
#               faiss with GPU support; fails at once without it)
#     compile   torch.compile rows: paper recipe's whole train step as
#               its configs train it (CUDA graphs; with the reference),
#               then in inductor's default mode; the fast recipe's,
#               compiled decoding and UNet
# Time limits per step (seconds) come from LIMIT_<STEP>, e.g.
# LIMIT_TRAIN=240. DRY_RUN=1 prints each step's module and arguments (one
# line each, tab-separated) instead of running it. Python: $PYTHON (default
# python3). Each script runs as a module from the repo root
# (python -m benchmarks.<script>), so it measures this tree's mmpcm; only
# mmpcm's dependencies need to be installed.
set -uo pipefail
if [ $# -lt 1 ]; then
    sed -n '2,22p' "$0"
    exit 2
fi
OUT="$1"
shift
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(train decode extract generate)
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="${WORKDIR:-$ROOT/work_dirs/benchmarks}"
mkdir -p "$OUT" "$WORK"
OUT="$(cd "$OUT" && pwd)"  # the steps run from the repo root
WORK="$(cd "$WORK" && pwd)"
export PYTHONUNBUFFERED=1

run() {  # run NAME LIMIT SCRIPT ARGS...: python -m benchmarks.SCRIPT
    local name="$1" limit="$2" module="benchmarks.$3"
    shift 3
    local work=(--workdir "$WORK")
    case "$module" in
    benchmarks.refine_speed) work=() ;;  # writes no files: no --workdir
    esac
    if [ -n "${DRY_RUN:-}" ]; then
        (IFS=$'\t'; echo "$name"$'\t'"$module"$'\t'"${work[*]}"$'\t'"--json"$'\t'"$OUT/$name.json"$'\t'"$*")
        return
    fi
    echo "== $name (limit ${limit}s): python -m $module $*" \
        | tee -a "$OUT/steps.log"
    local start=$SECONDS
    (cd "$ROOT" && timeout --kill-after=10 "$limit" "$PY" -m "$module" \
        "${work[@]}" --json "$OUT/$name.json" "$@") \
        >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start))s" \
        | tee -a "$OUT/steps.log"
}

for step in "${STEPS[@]}"; do
    case "$step" in
    train)
        run train "${LIMIT_TRAIN:-300}" train_throughput \
            --recipe paper fast --link-shards --ref-num-pairs 10000 \
            --trace-dir "$OUT/traces_train" ;;
    decode)
        run decode "${LIMIT_DECODE:-180}" decode_speed \
            --batch-size 1000 --precision fp32 bf16 --kv-cache on off \
            --profile ;;
    extract)
        run extract "${LIMIT_EXTRACT:-240}" extract_speed \
            --num-images 8192 --batch-size 256 --workers 8 15 --gpu-decode ;;
    generate)
        run generate "${LIMIT_GENERATE:-300}" generate_speed ;;
    refine)
        run refine "${LIMIT_REFINE:-600}" refine_speed --device cuda ;;
    compile)
        run compile_train_paper "${LIMIT_COMPILE:-300}" train_throughput \
            --recipe paper --compile train_step --compile-mode reduce-overhead \
            --link-shards --ref-num-pairs 10000 --iters 300 \
            --loader-batches 0 --trace-iters 0
        run compile_train_paper_inductor "${LIMIT_COMPILE:-300}" \
            train_throughput --recipe paper --compile train_step \
            --no-reference --link-shards --iters 300 --loader-batches 0
        run compile_train_fast "${LIMIT_COMPILE:-300}" train_throughput \
            --recipe fast --compile train_step --no-reference --link-shards \
            --iters 100 --loader-batches 0
        run compile_decode "${LIMIT_COMPILE:-300}" decode_speed \
            --batch-size 1000 --precision bf16 --compile --no-reference
        run compile_generate "${LIMIT_COMPILE:-300}" generate_speed \
            --compile ;;
    *)
        echo "unknown step: $step (train, decode, extract, generate, refine, compile)" >&2
        exit 2 ;;
    esac
done
