# The commands a new user and CI run. Everything installs into .venv from the pinned set.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser test test-fast demo serve bench bench-peer-env bench-peer clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Debian's Chromium for the browser test (Playwright's own browser download is not available). Quick
# when it is installed; where it cannot be installed (not root, no apt-get) the browser test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 \
		|| echo "Chromium could not be installed (apt-get install -y chromium): the browser test will be skipped"

test: $(STAMP) browser
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(PY) -m rosterflow.demo

serve: $(STAMP)
	$(PY) -m deployments.serve

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

# The matching benchmark's peer (Splink) lives in its own environment: its duckdb and other
# dependencies must not move the project's pinned set. `make bench` does not need it.
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed

bench-peer-env: $(PEER_STAMP)

$(PEER_STAMP): Makefile
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'splink==5.0.0' 'pyarrow>=18'
	touch $(PEER_STAMP)

# rosterflow and Splink side by side on the same districts: default and noisy noise, with and
# without IDs, 5,000 students, seeds 1 and 2 (JSON lines on stdout, the table on stderr).
bench-peer: $(STAMP) $(PEER_STAMP)
	$(PY) -m benchmarks.matching_quality --peer splink splink-fullname --why --sizes 5000 --seeds 1 2 \
		--noise default noisy --ids with without

clean:
	rm -rf $(VENV) $(PEER_VENV) var .pytest_cache
