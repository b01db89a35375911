# b24sync: `make demo` and `make test` work on a fresh machine from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the demo needs only the package itself; the tests and benchmarks also their own tools
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $(DEMO_STAMP)

install: $(STAMP)

# Seeds an emulated portal, provisions config.example.toml, syncs a SQLite mirror, prints both
# funnels and writes the reports to out/demo/ (b24sync demo --help for its options).
demo: $(DEMO_STAMP)
	$(BIN)/b24sync demo

# The tests need PostgreSQL and Chromium: .ci/services makes sure they are here and running.
test: $(STAMP)
	url="$$(.ci/services)" && B24SYNC_TEST_PG_URL="$$url" $(BIN)/python -m pytest -q -p no:cacheprovider

# Benchmarks print figures side by side with a baseline; DEALS sets the portal size (default 100,000).
DEALS ?= 100000
# HISTORY sets the report benchmark's mirror sizes (stage-history rows, comma-separated).
HISTORY ?= 100000,1000000
bench: $(STAMP)
	$(BIN)/python bench/bench_emulator.py --deals $(DEALS)
	$(BIN)/python bench/bench_list_all.py --deals $(DEALS)
	$(BIN)/python bench/bench_statefile.py --deals $(DEALS)
	url="$$(.ci/services)" && B24SYNC_TEST_PG_URL="$$url" $(BIN)/python bench/bench_sync.py --deals $(DEALS)
	url="$$(.ci/services)" && B24SYNC_TEST_PG_URL="$$url" $(BIN)/python bench/bench_report.py --rows $(HISTORY)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
