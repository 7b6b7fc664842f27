# The two commands: `make serve` runs the service, `make test` runs the whole test suite.
# Each creates the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test protect-sample browser

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/sepguard serve

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

# Debian's Chromium for the browser tests (Playwright drives it by its executable path).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

protect-sample: $(STAMP)
	$(VENV)/bin/sepguard protect samples/cifar10-train.zip -o protected-sample.zip --preset fast
