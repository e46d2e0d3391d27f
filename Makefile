# HealthFlow: `make run` installs and starts the platform, `make test` installs and runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint typecheck pytest services clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install web-build
	$(BIN)/healthflow serve

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

services:
	bash scripts/ensure-services.sh

pytest: install services
	$(BIN)/pytest -q

test: lint typecheck pytest web-test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
	rm -rf web/node_modules web/dist web/test-artifacts

# --- web dashboard (web/, docs/dashboard.md): npm ci when the lockfile changes, build when a
# source changes; `make test` also lints, type-checks, unit-tests and browser-tests it.
.PHONY: web-install web-build web-test web-e2e chromium
NPM ?= npm
WEB_STAMP := web/node_modules/.installed
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html \
	web/vite.config.ts web/tsconfig.json web/tsconfig.app.json web/tsconfig.node.json

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund
	touch $(WEB_STAMP)

web/dist/index.html: $(WEB_STAMP) $(WEB_SOURCES)
	cd web && $(NPM) run build

web-install: $(WEB_STAMP)

web-build: web/dist/index.html

chromium:
	bash scripts/ensure-chromium.sh

web-test: web-build
	cd web && $(NPM) run lint
	cd web && $(NPM) run typecheck
	cd web && $(NPM) run api:check
	cd web && $(NPM) test
	$(MAKE) web-e2e

web-e2e: install web-build chromium
	cd web && $(NPM) run e2e
