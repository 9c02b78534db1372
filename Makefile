# The two commands: `make demo` runs the main job, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test check bench clean system-deps browser-deps checker

# Debian packages the project needs (installed only when missing; needs root).
system-deps:
	@command -v $(PYTHON) >/dev/null && $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip)
	@command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq postgresql)
	@command -v openssl >/dev/null || (apt-get update -qq && apt-get install -y -qq openssl)
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)

# The tests drive the browser checker in Debian's headless Chromium (selenium and chromedriver).
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

# A local EVM node (anvil, Foundry's) for the demo and the tests: from npm, into .tools/ (not the system).
ANVIL := .tools/node_modules/.bin/anvil
$(ANVIL): | system-deps
	npm install --silent --no-audit --no-fund --prefix .tools @foundry-rs/anvil@1.7.1

# The browser proof checker (docs/browser-checker.md): one self-contained page, bundled with esbuild from
# the pinned npm packages of web/package-lock.json. Served by the API at /verify, or opened from file://.
CHECKER := web/dist/verify.html
# With it, the intake API's HTML reference (web/dist/api.html, Redoc) from the contract docs/openapi.json.
$(CHECKER): web/package.json web/package-lock.json web/build.mjs web/build-api.mjs docs/openapi.json $(wildcard web/src/*) | system-deps
	cd web && npm ci --silent --no-audit --no-fund && node build.mjs && node build-api.mjs

checker: $(CHECKER)

$(BIN)/.installed: pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: $(BIN)/.installed system-deps $(ANVIL) $(CHECKER)
	$(BIN)/anchorpipe demo

# Layer contracts (import-linter), bug-finding lint (ruff) and strict types on the core, then every test.
check: $(BIN)/.installed
	$(BIN)/lint-imports
	$(BIN)/ruff check pipelines workers tests bench
	$(BIN)/mypy

test: check system-deps browser-deps $(ANVIL) $(CHECKER)
	$(BIN)/python -m pytest --durations=30

bench: $(BIN)/.installed system-deps $(ANVIL)
	$(BIN)/python bench/merkle.py
	$(BIN)/python bench/translog.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/pull.py
	$(BIN)/python bench/anchors.py
	$(BIN)/python bench/witness.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/client.py

clean:
	rm -rf $(VENV) .tools .pytest_cache build *.egg-info web/node_modules web/dist
