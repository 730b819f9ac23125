# Two entry points do all set-up on a fresh machine: `make bench` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
FMNIST := /usr/share/datasets/fashion-mnist
export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED := 0

.PHONY: bench test test-slow perf lint data browser zoo report clean-results niqe-params constraints bench-scale test-gpu

# Installs through constraints.txt, the reference environment the committed results were made with; PIP_CONSTRAINT
# replaces any machine-wide pip constraint, which could otherwise hold torch below the reference version.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

# Regenerate constraints.txt from the current venv (after an intended upgrade; re-measure the committed results).
constraints: $(STAMP)
	@{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^robustgrid'; } \
	  > constraints.txt.new && mv constraints.txt.new constraints.txt

# Fashion-MNIST: Debian's package when we can install it, else the reader explains what to do.
data:
	@if [ -n "$$ROBUSTGRID_DATA" ] || [ -f $(FMNIST)/t10k-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "robustgrid: could not apt-get install dataset-fashion-mnist; set ROBUSTGRID_DATA to a folder with the Fashion-MNIST .gz files"; \
	else echo "robustgrid: Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' or set ROBUSTGRID_DATA to a folder with its .gz files"; fi

# Headless Chromium for the HTML leaderboard's browser test: Debian's package when we can install it, else the
# test skips and says why.
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
	  echo "robustgrid: could not apt-get install chromium; the HTML browser test will be skipped"; \
	else echo "robustgrid: chromium missing: run 'sudo apt-get install chromium' to run the HTML browser test"; fi

zoo: $(STAMP) data
	$(BIN)/robustgrid zoo train --quiet

bench: zoo
	$(BIN)/robustgrid run configs/default.toml --out results/default

# NIQE's standard parameters, from basicsr's source package on PyPI (checksum-pinned); only real-data configs use NIQE
niqe-params: $(STAMP)
	$(BIN)/robustgrid params niqe

report: $(STAMP)
	$(BIN)/robustgrid report results/default

test: $(STAMP) data browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-slow: $(STAMP) data
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

perf: $(STAMP) data
	$(BIN)/python -m pytest -q -p no:cacheprovider -m perf tests/perf/test_perf.py tests/perf/test_curve_cost.py --benchmark-enable --benchmark-columns=mean,stddev,rounds
	@# the leaderboard shows the curve ratios just measured (results/default/perf.json, its Speed section)
	@if [ -f results/default/cells.sqlite ]; then cp .benchmarks/ratios.json results/default/perf.json && \
		$(BIN)/robustgrid report results/default > /dev/null && echo "curve ratios shown in results/default/index.html#speed"; fi

# Scale: peak memory on 200 vs 2,000 streamed images, and local vs Ray executors on many shards (docs/scale.md)
bench-scale: $(STAMP) data
	$(BIN)/python -m pytest -q -s -p no:cacheprovider -m perf tests/perf/test_scale.py --benchmark-enable

# The CUDA checks (skipped without a GPU): a small grid on CUDA against the CPU
test-gpu: $(STAMP) data
	$(BIN)/python -m pytest -q -p no:cacheprovider -m gpu

lint: $(STAMP)
	$(BIN)/ruff check .
