# The two commands: `make serve` runs the service, `make test` runs the whole test suite.
# Each creates the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test protect-sample browser screenshots

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

# The README's screenshots, rendered again by the browser tests.
screenshots: $(STAMP) browser
	SEPGUARD_SCREENSHOTS=docs/screenshots $(VENV)/bin/pytest -q tests/app/web/test_web_browser.py

protect-sample: $(STAMP)
	$(VENV)/bin/sepguard protect samples/cifar10-train.zip -o protected-sample.zip --preset fast
