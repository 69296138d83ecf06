# Dark Pool Liquidity Dashboard
#   make demo   the full local stack: broker, feed, pipeline on Flink, serving, dashboard
#   make test   the whole test suite (starts its own stack on separate ports)
#   make bench  the benchmarks (prints figures)
# Each target runs `setup` first; setup is idempotent and, once cached, offline.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CACHE := .cache
export PIP_CACHE_DIR := $(CURDIR)/$(CACHE)/pip
export npm_config_cache := $(CURDIR)/$(CACHE)/npm
MVN := mvn -B -q -Dmaven.repo.local=$(CURDIR)/$(CACHE)/m2

.PHONY: setup demo test bench lint clean-state apt python jvm dashboard

setup: apt python jvm dashboard
	@echo "setup: done (python env .venv, JVM classpaths $(CACHE)/jvm, dashboard build)"

# --- system packages (Debian): Chromium for the browser tests -------------------
apt: $(CACHE)/apt.stamp
$(CACHE)/apt.stamp:
	@mkdir -p $(CACHE)
	@if ! command -v chromium >/dev/null || ! command -v wrk >/dev/null; then \
	  echo "setup: installing Debian packages (chromium for browser tests, wrk for the serving benchmark)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-liberation wrk >/dev/null; \
	fi
	@touch $@

# --- Python environment (pinned in requirements.lock) -------------------------
python: $(VENV)/.stamp
$(VENV)/.stamp: requirements.lock setup.py
	@echo "setup: python environment in $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# --- JVM classpaths (Kafka broker; Beam job server + expansion service) -------
jvm: $(CACHE)/jvm/.stamp
$(CACHE)/jvm/.stamp: jvm/pom.xml jvm/kafka/pom.xml jvm/beam/pom.xml jvm/transforms/pom.xml $(shell find jvm/transforms/src -type f)
	@echo "setup: resolving JVM artifacts with Maven into $(CACHE)/jvm"
	@rm -rf $(CACHE)/jvm/kafka $(CACHE)/jvm/beam
	@$(MVN) -f jvm/pom.xml package
	@touch $@

# --- dashboard (Vite build into serving/static) ---------------------------------
dashboard:
	@if [ -f dashboard/package.json ]; then $(MAKE) --no-print-directory serving/static/.stamp; fi
serving/static/.stamp: $(shell find dashboard -type f -not -path '*/node_modules/*' -not -path '*/dist/*' 2>/dev/null)
	@echo "setup: building the dashboard (npm ci + vite build)"
	@cd dashboard && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent
	@touch $@

demo: setup
	@$(VENV)/bin/darkpool demo

test: setup
	@$(VENV)/bin/ruff check .
	@DARKPOOL_TEST_STOP_STACK=1 $(PY) -m pytest

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-state:
	@$(VENV)/bin/darkpool stack down || true
	rm -rf .state
