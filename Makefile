# b24sync: `make demo` and `make test` work on a fresh machine from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m jobs.demo

# The tests need PostgreSQL and Chromium: .ci/services makes sure they are here and running.
test: $(STAMP)
	url="$$(.ci/services)" && B24SYNC_TEST_PG_URL="$$url" $(BIN)/python -m pytest -q -p no:cacheprovider

# Benchmarks print figures side by side with a baseline; DEALS sets the portal size (default 100,000).
DEALS ?= 100000
bench: $(STAMP)
	$(BIN)/python bench/bench_emulator.py --deals $(DEALS)
	$(BIN)/python bench/bench_list_all.py --deals $(DEALS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
