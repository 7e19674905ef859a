# make demo / make test: both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vpr-installed

.PHONY: setup demo test lint bench clean gpu-check

$(STAMP): setup.py setup.cfg pyproject.toml scripts/setup_venv.sh
	bash scripts/setup_venv.sh $(VENV)
	@touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m vpr_ros.demo --out demo_out

test: lint
	$(PY) -m pytest -q test

# Formatting, lint and complexity over the whole repo, types over vpr_core and vpr_ros (versions pinned in setup.py);
# part of `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/bench_datasets.py ../shared/datasets
	$(PY) bench/bench_retrieval.py
	$(PY) bench/bench_rerank.py ../shared/datasets
	$(PY) bench/bench_node.py
	$(PY) bench/bench_maps.py ../shared/datasets
	$(PY) bench/bench_scale.py --n 1000000

# On a machine with an NVIDIA GPU and its own CUDA PyTorch (not .venv's CPU build): one table, under 10 minutes.
gpu-check:
	python3 scripts/gpu_check.py

clean:
	rm -rf demo_out build install log .pytest_cache
