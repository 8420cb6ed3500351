# Two commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export YOLO_OFFLINE := 1
export YOLO_VERBOSE := False

.PHONY: demo test bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Installs the package with everything the demo and the tests use, at the versions of
# constraints-dev.txt (without them pip backtracks for a long time over boto3/aiobotocore/ray).
$(VENV)/.boxloop-dev: pyproject.toml constraints-dev.txt | $(VENV)/bin/python
	$(PIP) install -q -e '.[dev]' -c constraints-dev.txt
	touch $@

demo: $(VENV)/.boxloop-dev
	$(VENV)/bin/boxloop demo --out demo-out

# The report test opens the HTML report in Debian's Chromium (no browser download).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium at $(CHROMIUM) for the report test"; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# The az:// tests run against Azurite, Microsoft's Azure Storage emulator (a Node package).
AZURITE := .cache/azurite/node_modules/.bin/azurite-blob
$(AZURITE):
	@command -v npm >/dev/null || { echo "install Node.js and npm (Debian: apt-get install nodejs npm) for the Azure Blob test"; exit 1; }
	npm install --silent --no-audit --no-fund --prefix .cache/azurite azurite@3.37.0

test: $(VENV)/.boxloop-dev $(CHROMIUM) $(AZURITE)
	$(PY) -m pytest -q tests

bench: $(VENV)/.boxloop-dev
	$(PY) bench/ingest.py --n 2000
	$(PY) bench/predict.py
	$(PY) bench/decode.py
	$(PY) bench/shrink.py
	$(PY) bench/tiles.py
	$(PY) bench/rtdetr.py
	$(PY) bench/prelabel.py
	$(PY) bench/audit.py
	$(PY) bench/selection.py --n 50000
	$(PY) bench/serve.py
	$(PY) bench/engine.py --n 2000

lint: $(VENV)/.boxloop-dev
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) demo-out .pytest_cache .cache
