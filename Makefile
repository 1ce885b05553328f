# lattherm — the two set-up commands (README): `make run` and `make test`.
# The venv is (re)installed when pyproject.toml or constraints.txt change; torch is pinned to the
# local CPU build through constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORES  ?= all
TARGET ?= all
SNAKEMAKE_ARGS ?=

.PHONY: run test bench lint slurm-test clean-venv
.DEFAULT_GOAL := run

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(VENV)/.installed $@

## run: install, then run the main job (laptop config) and say where the results are
run: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS) $(TARGET)
	@echo
	@echo "Results are under results/ (tables: results/{system}/{size}/..., figures: results/figures/, job logs: results/logs/)."
	@echo "Browse them: .venv/bin/snakemake --report report.zip"

## test: install with test extras, then run the whole suite
test: $(VENV)/.installed-test
	$(VENV)/bin/pytest $(PYTEST_ARGS)

## bench: run the benchmarks of benchmarks/manifest.yaml this machine can, each recording its runs under
##        benchmarks/results/; ONLY="training cuau_energy" runs those entries only. Entries that need
##        trained checkpoints or (without CUDA) a GPU are skipped, saying why; `make bench ONLY=x` with
##        BENCH_ARGS=--dry-run says what would run, BENCH_ARGS=--list prints the manifest.
bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py $(BENCH_ARGS) $(ONLY)

## slurm-test: the Slurm tests on a throw-away single-node cluster on localhost (root, Debian)
slurm-test: $(VENV)/.installed-test
	ci/slurm/up.sh
	$(VENV)/bin/pytest -m slurm $(PYTEST_ARGS); rc=$$?; ci/slurm/down.sh; exit $$rc

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks workflow/scripts
	$(VENV)/bin/snakemake --lint

clean-venv:
	rm -rf $(VENV)
