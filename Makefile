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

.PHONY: setup demo test bench lint clean-state apt python jvm dashboard k8s-tools images-setup images

setup: apt python jvm dashboard k8s-tools images-setup
	@echo "[$$(date +%T)] setup: done (python env .venv, JVM classpaths $(CACHE)/jvm, dashboard build)"

# --- system packages (Debian): Chromium for the browser tests -------------------
# a stalled mirror connection is dropped after 30 s and retried, up to 5 times
APT_OPTS := -o Acquire::http::Timeout=30 -o Acquire::Retries=5
apt: $(CACHE)/apt.stamp
$(CACHE)/apt.stamp:
	@mkdir -p $(CACHE)
	@if ! command -v chromium >/dev/null || ! command -v wrk >/dev/null; then \
	  echo "[$$(date +%T)] setup: installing Debian packages (chromium for browser tests, wrk for the serving benchmark)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get $(APT_OPTS) update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get $(APT_OPTS) install -y -qq chromium fonts-liberation wrk >/dev/null; \
	fi
	@touch $@

# --- Python environment (pinned in requirements.lock) -------------------------
python: $(VENV)/.stamp
$(VENV)/.stamp: requirements.lock setup.py
	@echo "[$$(date +%T)] setup: python environment in $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

# --- JVM classpaths (Kafka broker; Beam job server + expansion service; S3Proxy + Flink S3 plugin) --
jvm: $(CACHE)/jvm/.stamp
$(CACHE)/jvm/.stamp: jvm/pom.xml jvm/kafka/pom.xml jvm/beam/pom.xml jvm/transforms/pom.xml jvm/s3proxy/pom.xml $(shell find jvm/transforms/src -type f)
	@echo "[$$(date +%T)] setup: resolving JVM artifacts with Maven into $(CACHE)/jvm"
	@rm -rf $(CACHE)/jvm/kafka $(CACHE)/jvm/beam $(CACHE)/jvm/s3proxy $(CACHE)/jvm/flink-plugins
	@$(MVN) -f jvm/pom.xml package
	@touch $@

# --- dashboard (Vite build into serving/static) ---------------------------------
dashboard:
	@if [ -f dashboard/package.json ]; then $(MAKE) --no-print-directory serving/static/.stamp; fi
serving/static/.stamp: $(shell find dashboard -type f -not -path '*/node_modules/*' -not -path '*/dist/*' 2>/dev/null)
	@echo "[$$(date +%T)] setup: building the dashboard (npm ci + vite build)"
	@cd dashboard && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent
	@touch $@

# --- Kubernetes control plane and operators for the k8s tests (docs/kubernetes.md) -------------
# kubectl (kustomize inside), etcd, kube-apiserver and kube-controller-manager built from the Go module
# proxy (tools/k8s, tools/etcd: go.mod + go.sum pinned); the Flink Kubernetes Operator classpath and the
# Flink/Strimzi CRDs from Maven Central (jvm/k8s/pom.xml). Everything lands in .cache/k8s.
K8S_DIR := $(CACHE)/k8s
K8S_VERSION := v1.34.2
JAVA21 ?= /usr/lib/jvm/temurin-25-jdk-amd64/bin/java
GO_ENV := GOMODCACHE=$(CURDIR)/$(CACHE)/go/mod GOCACHE=$(CURDIR)/$(CACHE)/go/build GOPATH=$(CURDIR)/$(CACHE)/go \
  GOSUMDB=off GOWORK=off GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
K8S_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34
# $(call go_build,module dir,ldflags,package,binary): one binary, written whole, then renamed
define go_build
@command -v go >/dev/null || { echo "[$$(date +%T)] setup: Go >= 1.24 is needed to build $(notdir $(4)) (https://go.dev/dl/)" >&2; exit 1; }
@mkdir -p $(dir $(4)) $(CACHE)/go
@cd $(1) && flock $(CURDIR)/$(CACHE)/go/build.lock env $(GO_ENV) go build -trimpath -ldflags '$(2)' -o $(CURDIR)/$(4).tmp $(3)
@mv $(4).tmp $(4)
endef
# Each output has a stamp named after the hash of its sources: it is rebuilt when their content
# changes (not their mtime: a fresh clone with a restored .cache rebuilds nothing) or when it is missing.
src_hash = $(shell cat $(1) | sha256sum | cut -c1-16)
unless_exists = $(if $(wildcard $(1)),,k8s-force)
K8S_HASH := $(call src_hash,tools/k8s/go.mod tools/k8s/go.sum tools/k8s/tools.go)
ETCD_HASH := $(call src_hash,tools/etcd/go.mod tools/etcd/go.sum tools/etcd/main.go)
K8S_JVM_HASH := $(call src_hash,jvm/k8s/pom.xml)
K8S_STAMPS := $(K8S_DIR)/stamps
.PHONY: k8s-force
k8s-force:

k8s-tools: $(K8S_STAMPS)/kubectl-$(K8S_HASH) $(K8S_STAMPS)/etcd-$(ETCD_HASH) \
  $(K8S_STAMPS)/kube-apiserver-$(K8S_HASH) $(K8S_STAMPS)/kube-controller-manager-$(K8S_HASH) \
  $(K8S_STAMPS)/jvm-$(K8S_JVM_HASH)
$(K8S_STAMPS)/kubectl-$(K8S_HASH): $(call unless_exists,$(K8S_DIR)/bin/kubectl)
	@echo "[$$(date +%T)] setup: building kubectl $(K8S_VERSION) from Go modules into $(K8S_DIR)/bin (~1 min cold)"
	$(call go_build,tools/k8s,$(K8S_LDFLAGS),k8s.io/kubernetes/cmd/kubectl,$(K8S_DIR)/bin/kubectl)
	@mkdir -p $(@D) && touch $@
$(K8S_STAMPS)/etcd-$(ETCD_HASH): $(call unless_exists,$(K8S_DIR)/bin/etcd)
	@echo "[$$(date +%T)] setup: building etcd v3.6.5 from Go modules into $(K8S_DIR)/bin (~1 min cold)"
	$(call go_build,tools/etcd,-s -w,.,$(K8S_DIR)/bin/etcd)
	@mkdir -p $(@D) && touch $@
$(K8S_STAMPS)/kube-apiserver-$(K8S_HASH): $(call unless_exists,$(K8S_DIR)/bin/kube-apiserver)
	@echo "[$$(date +%T)] setup: building kube-apiserver $(K8S_VERSION) from Go modules into $(K8S_DIR)/bin (~4 min cold)"
	$(call go_build,tools/k8s,$(K8S_LDFLAGS),k8s.io/kubernetes/cmd/kube-apiserver,$(K8S_DIR)/bin/kube-apiserver)
	@mkdir -p $(@D) && touch $@
$(K8S_STAMPS)/kube-controller-manager-$(K8S_HASH): $(call unless_exists,$(K8S_DIR)/bin/kube-controller-manager)
	@echo "[$$(date +%T)] setup: building kube-controller-manager $(K8S_VERSION) from Go modules into $(K8S_DIR)/bin (~2 min cold)"
	$(call go_build,tools/k8s,$(K8S_LDFLAGS),k8s.io/kubernetes/cmd/kube-controller-manager,$(K8S_DIR)/bin/kube-controller-manager)
	@mkdir -p $(@D) && touch $@
$(K8S_STAMPS)/jvm-$(K8S_JVM_HASH): $(call unless_exists,$(K8S_DIR)/operator/lib)
	@echo "[$$(date +%T)] setup: Flink Kubernetes Operator classpath, Flink and Strimzi CRDs (Maven) into $(K8S_DIR)"
	@test -x $(JAVA21) || { echo "[$$(date +%T)] setup: Strimzi's CRD generator needs Java 21+: set JAVA21=/path/to/bin/java" >&2; exit 1; }
	@rm -rf $(K8S_DIR)/operator $(K8S_DIR)/crds $(K8S_DIR)/strimzi-generator $(K8S_DIR)/.markers
	@mkdir -p $(K8S_DIR)/crds/strimzi
	@$(MVN) -f jvm/k8s/pom.xml package -Dk8s.dir=$(CURDIR)/$(K8S_DIR) -Djava25=$(JAVA21)
	@mkdir -p $(@D) && touch $@

# --- container images (docs/images.md) -------------------------------------------------------
# buildah, umoci, skopeo, mmdebstrap (and shellcheck for the images' scripts) from Debian; `images-setup` caches every input of the images
# in .cache/images (Debian bookworm root filesystems, Flink 1.19.3's scripts, the wheelhouse of
# requirements.lock, hadolint); `make images` builds darkpool-flink and darkpool-python (OCI archives).
IMAGE_APT := buildah umoci skopeo mmdebstrap shellcheck
images-setup: $(CACHE)/images/setup.stamp
$(CACHE)/images/setup.stamp: deploy/images.py requirements.lock images/flink/flink-scripts.txt \
  images/lint-requirements.txt images/python/requirements-debian.txt $(VENV)/.stamp
	@if ! command -v buildah >/dev/null || ! command -v umoci >/dev/null || ! command -v skopeo >/dev/null \
	  || ! command -v mmdebstrap >/dev/null || ! command -v shellcheck >/dev/null; then \
	  echo "[$$(date +%T)] setup: installing Debian packages for the container images ($(IMAGE_APT))"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get $(APT_OPTS) update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get $(APT_OPTS) install -y -qq $(IMAGE_APT) >/dev/null; \
	fi
	@echo "[$$(date +%T)] setup: caching the container images' inputs in $(CACHE)/images (root filesystems, wheels, hadolint)"
	@$(VENV)/bin/darkpool images prepare
	@touch $@

images: setup
	@$(VENV)/bin/darkpool images build

demo: setup
	@$(VENV)/bin/darkpool demo

test: setup
	@$(VENV)/bin/ruff check .
	@DARKPOOL_TEST_STOP_STACK=1 $(PY) -m pytest

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# the soak (bench/soak.py): the demo for SOAK_MINUTES (default 30) at the live feed rate, sampled every
# minute; extra flags in SOAK_ARGS, e.g. make soak SOAK_MINUTES=5 SOAK_ARGS="--fresh --compact-every 2"
.PHONY: soak
SOAK_MINUTES ?= 30
soak: setup
	@$(PY) bench/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

clean-state:
	@$(VENV)/bin/darkpool stack down || true
	rm -rf .state
