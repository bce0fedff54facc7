# Two commands do all the set-up on a fresh machine:
#   make run    the workstation on embedded defaults (SQLite, filesystem broker, local files, tiny model)
#   make test   the whole suite (ruff, mypy, deptry, ESLint, API drift, Vitest, pytest unit +
#               integration + browser)
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WEB_PORT ?= 8000
export WEB_PORT

.PHONY: lock help run test venv frontend models migrate demo lint pytest vitest chromium system-deps clean api-check api-types

help:
	@echo "make run   - start the workstation on http://127.0.0.1:$(WEB_PORT)/studio/ (embedded defaults)"
	@echo "make test  - install what is needed and run the whole suite"

# --- Python ------------------------------------------------------------------------------------
# Every Python package comes from requirements.lock (exact versions, resolved by `make lock`).
# torch is installed first from constraints.txt: on these machines `torch==2.13.0` resolves to
# the local CPU wheel, on a GPU machine to the CUDA build of the same version. The lock records
# the version without its local label (+cpu), and everything after torch is installed with the
# constraint, so nothing swaps the CPU build for a multi-GB CUDA one.
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Drop pip's notes about index folders this machine does not have; keep real errors.
PIP_QUIET := 2>&1 | { grep -v "WARNING: Location 'file:" || true; }
$(BIN)/.installed: pyproject.toml constraints.txt requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) "$$(grep -m1 '^pip==' requirements.lock)" $(PIP_QUIET)
	$(PIP) "$$(grep -m1 '^torch==' constraints.txt)" $(PIP_QUIET)
	$(PIP) -c constraints.txt -r requirements.lock $(PIP_QUIET)
	$(BIN)/python tools/check_lock.py requirements.lock
	touch $@

# Re-resolve every dependency (runtime and dev) to exact versions. Run after editing the ranges
# in pyproject.toml, or to take upstream releases on purpose; then `make test` and commit both.
lock: venv
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --allow-unsafe --no-emit-index-url \
	  --no-emit-find-links --no-header -o requirements.lock pyproject.toml $(PIP_QUIET)
	sed -i -E 's/^(torch==[^+ ]+)\+[A-Za-z0-9.]+/\1/' requirements.lock
	@echo "requirements.lock updated: run make test, then commit pyproject.toml and the lock."

venv: $(BIN)/.installed

# --- Frontend ----------------------------------------------------------------------------------
frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

FRONTEND_SOURCES := $(shell find frontend/src frontend/index.html frontend/vite.config.ts frontend/tsconfig.json -type f 2>/dev/null)
frontend/dist/index.html: frontend/node_modules/.installed $(FRONTEND_SOURCES)
	cd frontend && npm run --silent build

frontend: frontend/dist/index.html

# --- Embedded run --------------------------------------------------------------------------------
var/models/profile.json: engine/tiny.py | venv
	$(BIN)/python -m engine build-tiny var/models

models: var/models/profile.json

migrate: venv
	$(BIN)/python manage.py migrate --no-input

demo: migrate
	$(BIN)/python manage.py seed_demo

run: system-deps venv frontend models demo
	@echo
	@echo "  Portrait Template Workstation: http://127.0.0.1:$(WEB_PORT)/studio/"
	@echo "  API health:                    http://127.0.0.1:$(WEB_PORT)/api/v1/health"
	@echo "  API docs:                      http://127.0.0.1:$(WEB_PORT)/api/v1/docs/"
	@echo "  Ctrl-C stops the web server and the worker."
	@echo
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python tools/run_procfile.py -f Procfile

# --- Tests ---------------------------------------------------------------------------------------
# Tests keep their data under var/test; the tiny model is shared with `make run` (var/models).
TEST_ENV := VAR_DIR=$(CURDIR)/var/test ENGINE_MODELS_DIR=$(CURDIR)/var/models ENGINE_TORCH_THREADS=1

# Debian packages: a CJK font for the visible "AI生成" label on every output, and chromium for
# the browser tests (a test tool's own browser download is not used).
SYSTEM_PACKAGES_RUN := fonts-wqy-microhei
system-deps:
	@dpkg -s $(SYSTEM_PACKAGES_RUN) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES_RUN) >/dev/null; }

chromium: system-deps
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Static checks: each one fails the build when it fails.
lint: venv frontend/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/deptry .
	cd frontend && npm run --silent lint

pytest: venv frontend models chromium
	rm -rf var/test
	$(TEST_ENV) $(BIN)/python -m pytest --durations=40

vitest: frontend/node_modules/.installed
	cd frontend && npm test --silent

# The frontend's API types are generated from the OpenAPI schema and checked in: fail when the
# API changed and `make api-types` was not run.
api-check: venv frontend/node_modules/.installed
	mkdir -p var
	VAR_DIR=$(CURDIR)/var/test-schema $(BIN)/python manage.py spectacular --format openapi-json --file var/openapi.json --fail-on-warn
	cd frontend && npm run --silent check:api

api-types: venv frontend/node_modules/.installed
	mkdir -p var
	$(BIN)/python manage.py spectacular --format openapi-json --file var/openapi.json
	cd frontend && npm run --silent gen:api

test: lint api-check vitest pytest

clean:
	rm -rf var/test frontend/dist

# --- GPU kit (the lent H200) ---------------------------------------------------------------------
# `make gpu-kit` fills .gpu-kit/ (ignored) with what the device machine lacks for bench/gpu.sh:
# cp312/pure-Python wheels at the lock's versions (torch and what the device image already has
# are not downloaded), the two dlib model files and a CJK label font (xz). bench/gpu.sh's header
# gives the exact `run` invocation (command, carry list); `bash bench/gpu.sh --cpu-smoke` dry-runs
# every section here on the CPU with the tiny models.
GPU_KIT := .gpu-kit
GPU_KIT_WHEELS := diffusers peft transformers regex dlib-bin invisible-watermark pywavelets
.PHONY: gpu-kit
gpu-kit: venv
	$(BIN)/python bench/make_kit.py --out $(GPU_KIT) --lock requirements.lock $(GPU_KIT_WHEELS)
