# processcontrol: run `make help` to see what each target does.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help
help: ## Show the targets and what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml tests/harness/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint]' -e tests/harness
	touch $@

.PHONY: install
install: $(STAMP) ## Create .venv with the package and the test harness (tests/harness, both editable), test and lint tools

# The Debian packages a target needs are checked first, before it builds or starts anything (hack/deps.sh): as root
# what is missing is installed, otherwise the target stops with the one apt-get line to run.
.PHONY: deps
deps: ## Install the Debian packages every tier needs, when missing (root; otherwise prints the command)
	@hack/deps.sh local node

.PHONY: deps-local
deps-local: ## The same for the local tiers only: nc, ncat, socat, perl, python3, lua5.1
	@hack/deps.sh local

.PHONY: deps-node
deps-node: ## The same for the real node only (root): docker.io, containerd, runc, CNI plugins, iptables, ...
	@hack/deps.sh node

.PHONY: lint
lint: $(STAMP) ## ruff: lint and format check
	$(VENV)/bin/ruff check operator tests bench hack
	$(VENV)/bin/ruff format --check operator tests bench hack

.PHONY: fmt
fmt: $(STAMP) ## ruff: fix what can be fixed and format
	$(VENV)/bin/ruff check --fix operator tests bench hack
	$(VENV)/bin/ruff format operator tests bench hack

.PHONY: typecheck
typecheck: $(STAMP) ## mypy --strict over the package
	$(VENV)/bin/mypy

.PHONY: helm
helm: ## Build the real helm (v3.22.0) from the Go module proxy into the cache, once (hack/build-helm.sh)
	@hack/build-helm.sh >/dev/null

.PHONY: go-container-run
go-container-run: ## Build (cached) the Go original container-run from ../shared/third_party, to test ours against
	hack/build-container-run.sh --optional >/dev/null

.PHONY: controlplane-binaries
controlplane-binaries: ## Build (cached) the local control plane from the Go module proxy: etcd, kube-apiserver, kube-controller-manager, kubectl, kwok (~8 min cold)
	@hack/build-controlplane.sh

.PHONY: node-images
node-images: deps-node $(STAMP) controlplane-binaries ## Build (cached) the real node's kubelet, kube-proxy and pause, and its images (base, operator, workload; ~10 min cold)
	@hack/build-node.sh
	$(PY) -m harness.images build >/dev/null

.PHONY: unit
unit: deps-local $(STAMP) helm go-container-run ## Unit tests: no cluster, real processes and sockets
	$(PY) -m pytest tests/unit -q

.PHONY: demo
demo: $(STAMP) controlplane-binaries ## See it work: local control plane, operator, 3 fake kubecf pods, a verified suspension
	$(PY) hack/demo.py up

.PHONY: demo-down
demo-down: $(STAMP) ## Stop the demo: operator, fake pods' processes, control plane
	$(PY) hack/demo.py down

.PHONY: e2e
e2e: deps-local $(STAMP) helm go-container-run controlplane-binaries ## End-to-end tests on the real local control plane (builds it on first use, ~8 min cold)
	$(PY) -m pytest tests/e2e -v

.PHONY: e2e-node
e2e-node: deps-node $(STAMP) node-images ## End-to-end tests on a real node (kubelet, containerd, runc), the operator as a pod (root)
	$(PY) -m pytest tests/node -v

.PHONY: test
test: deps lint typecheck unit e2e e2e-node ## Everything CI runs: lint, type check, unit, e2e and real-node tests (root)

IMAGE ?= ghcr.io/processcontrol/processcontrol:0.1.0
BASE_IMAGE ?= python:3.11-slim

# The operator image's dependencies, pinned with their hashes (the Dockerfile installs them with --require-hashes):
# pyproject.toml's dependencies and its build backend, for Python 3.11 on any platform. uv only runs here.
UV_VERSION ?= 0.13.9

.PHONY: lock
lock: $(STAMP) ## Regenerate requirements.lock (the image's dependencies, with hashes) from pyproject.toml, with uv
	$(PY) -m pip install -q uv==$(UV_VERSION)
	echo 'setuptools>=77' | $(VENV)/bin/uv pip compile pyproject.toml - --generate-hashes --universal \
	  --python-version 3.11 --custom-compile-command 'make lock' --quiet -o requirements.lock

.PHONY: image
image: ## Build the operator image with docker (IMAGE=..., BASE_IMAGE=... any Python >= 3.11 base)
	docker build --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .

.PHONY: demo-node
demo-node: deps-node $(STAMP) ## The demo on a real node: kubelet + containerd, images built here, the operator as a pod (root)
	$(PY) hack/demo_node.py up

.PHONY: demo-node-down
demo-node-down: $(STAMP) ## Stop the real-node demo and remove everything it made
	$(PY) hack/demo_node.py down

.PHONY: crds
crds: $(STAMP) ## Regenerate crds/processsuspensions.yaml (and the chart's copy) from the pydantic models
	$(VENV)/bin/processcontrol crd > crds/processsuspensions.yaml
	cp crds/processsuspensions.yaml charts/processcontrol/crds/processsuspensions.yaml

.PHONY: chart-schema
chart-schema: $(STAMP) ## Regenerate the settings part of the chart's values.schema.json from the settings model
	$(PY) -m harness.chart_schema

.PHONY: dist
dist: $(STAMP) ## Build dist/install.yaml (deploy/ in one file) and dist/processcontrol-<version>.tgz (the Helm chart)
	$(PY) -m harness.chart dist

.PHONY: controlplane
controlplane: $(STAMP) ## Build (cached) and start the local control plane: etcd, kube-apiserver, controller-manager, kwok
	hack/build-controlplane.sh
	$(PY) -m harness.controlplane up
	@echo 'Use it: eval "$$($(PY) -m harness.controlplane env)"'

.PHONY: controlplane-down
controlplane-down: $(STAMP) ## Stop the local control plane and the fake pods' host processes
	$(PY) -m harness.controlplane down

# Each run records a new dated file under bench/; UPDATE=1 also replaces the committed latest.* (bench/recording.py).
LATEST = $(if $(UPDATE),--update-latest)

.PHONY: bench
bench: deps-local $(STAMP) controlplane-binaries ## Benchmarks, quick (minutes): N=10,50 pods; ours vs the seed's nc loop and xargs+ncat; drift; containerrun
	$(PY) bench/suspend_bench.py --quick $(LATEST)

.PHONY: bench-node
bench-node: deps-node $(STAMP) node-images ## Benchmark on the real node (root, ~10 min): exec p50/p99 through the kubelet; N=10,50 vs seed loop, xargs+ncat
	$(PY) bench/node_bench.py --sizes 10,50

.PHONY: bench-failover
bench-failover: deps-node $(STAMP) node-images ## Failover on the real node (root, ~20 min): leader pod deleted -> held process stopped again, p50/p95, 2 replicas vs 1 Recreate (TRIALS=5)
	$(PY) bench/failover_bench.py $(if $(TRIALS),--trials $(TRIALS))

.PHONY: bench-ab
bench-ab: deps-local $(STAMP) controlplane-binaries ## The operator against an earlier build, N=50 pods, in turns on one control plane (BASELINE=commit; ~15 min)
	@test -n "$(BASELINE)" || { echo "make bench-ab BASELINE=<commit>, e.g. BASELINE=7d3e18a"; exit 2; }
	$(PY) bench/ab_bench.py --baseline $(BASELINE) $(if $(PODS),--pods $(PODS))

.PHONY: bench-full
bench-full: deps-local $(STAMP) controlplane-binaries ## Benchmarks, full (~40 min): N=10,50,200 pods, 3 repeats, 20 restarts at N=200, footprint (1,000 pods)
	$(PY) bench/suspend_bench.py --full $(LATEST)

.PHONY: bench-footprint
bench-footprint: $(STAMP) controlplane-binaries ## Operator RSS and CPU, ~10 min: 1,000 pods watched (100 with real processes), 100 suspensions
	$(PY) bench/footprint_bench.py

.PHONY: bench-scale
bench-scale: deps-local $(STAMP) controlplane-binaries ## Scale (not in CI; ~1 h at 10,000): one suspension of N simulated pods, N=1,000..10,000 (PODS=1000,2000 for fewer; BASELINE=commit to run an earlier build too)
	$(PY) bench/scale_bench.py $(if $(PODS),--pods $(PODS)) $(if $(BASELINE),--baseline $(BASELINE))

SEED ?= 1
STEPS ?= 1000

.PHONY: soak
soak: $(STAMP) controlplane-binaries ## Promise soak (not in CI; SEED=, STEPS=, ~10 s a step): random steps and faults, the invariant after each
	$(PY) bench/soak_promise.py --seed $(SEED) --steps $(STEPS)

.PHONY: soak-faults
soak-faults: $(STAMP) controlplane-binaries ## Fault soak (~40 min, not in CI): 20 operator SIGKILL trials on 30 pods, 5 apiserver and 5 etcd restarts
	$(PY) bench/soak_faults.py $(LATEST)
