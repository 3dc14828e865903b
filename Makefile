# The same targets CI runs (.ci/run calls `make ci`). `make test` is the README's test command.
.PHONY: all control-plane kyverno test test-fast test-node node-deps image lint crds demo demo-node bench soak up up-node ci leftovers

CARGO ?= cargo
SOAK_MINUTES ?= 30
SOAK_SEED ?=
SOAK_LOG_LEVEL ?= warn

all: lint test

## Build (or reuse from the cache) etcd, kube-apiserver, kube-controller-manager, kubectl, helm.
control-plane:
	tools/build-control-plane.sh

## Kyverno's admission and background controllers (pinned in tools/kyverno), cached beside the
## control plane: only for the benchmark that runs them beside groupbinder, never for make test.
kyverno:
	tools/build-control-plane.sh --kyverno

## Every test: unit tests, end-to-end tests on a real control plane, and the chart's pod on a
## real node (test-node).
test: test-fast test-node

## Unit tests and end-to-end tests on a real control plane (no node, no root needed).
test-fast: control-plane
	$(CARGO) test --workspace --locked

## The image, installed by the chart as a pod on a real node (kubelet, containerd): needs root.
test-node: control-plane node-deps image
	GROUPBINDER_IMAGE=$(IMAGE_TAR) $(CARGO) test --locked -p groupbinder-e2e --test node -- --ignored --nocapture

## What the test node needs from Debian (containerd, runc, the CNI plugins), installed when missing.
node-deps:
	@if command -v containerd >/dev/null && command -v runc >/dev/null && command -v ctr >/dev/null \
	  && command -v ip >/dev/null && command -v iptables >/dev/null && [ -x /usr/lib/cni/bridge ]; then \
	  echo "node packages present: $$(containerd --version | cut -d' ' -f3), runc $$(runc --version | sed -n 's/runc version //p')"; \
	else \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    containerd runc containernetworking-plugins iproute2 iptables; \
	fi

## The container image without a container engine (docker-archive, for `ctr images import`,
## `docker load`, `podman load`): the Dockerfile's steps, tools/build-release.sh then tools/image.sh.
APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/groupbinder/Chart.yaml)
IMAGE ?= ghcr.io/groupbinder/groupbinder:$(APP_VERSION)
IMAGE_TAR := $(CURDIR)/target/image/groupbinder.tar
image:
	@mkdir -p target/image
	tools/build-release.sh target/image/groupbinder
	tools/image.sh Dockerfile target/image/groupbinder $(IMAGE) $(IMAGE_TAR)

## Regenerate crds/ from the Rust types (a test fails when the committed copy differs).
crds:
	$(CARGO) run --quiet --locked -p groupbinder -- crd > crds/azuregroupbinding.yaml
	cp crds/azuregroupbinding.yaml charts/groupbinder/crds/azuregroupbinding.yaml

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

## The main job end to end: control plane, CRD, K10 roles, operator, the seed example, access checks.
demo: control-plane
	$(CARGO) build --quiet --locked -p groupbinder -p groupbinder-e2e --bins
	$(CARGO) run --quiet --locked -p groupbinder-e2e --bin groupbinder-demo

## The same story with the operator as users run it: the image, installed by the chart as a pod on a
## real node (root).
demo-node: control-plane node-deps image
	$(CARGO) build --quiet --locked -p groupbinder -p groupbinder-e2e --bins
	GROUPBINDER_IMAGE=$(IMAGE_TAR) $(CARGO) run --quiet --locked -p groupbinder-e2e --bin groupbinder-demo -- --node

## The benchmark (not part of CI): N=1000 by default, `make bench BENCH_ARGS="--n 5000"`;
## `BENCH_ARGS=--selectors` (2,000 and 10,000 namespaces, then Kyverno), `BENCH_ARGS=--kyverno`.
bench: control-plane kyverno
	$(CARGO) build --release --quiet --locked -p groupbinder -p groupbinder-e2e --bins
	target/release/groupbinder-bench $(BENCH_ARGS)

## The randomized soak (not part of CI; its one-minute form is in `make test`):
## `make soak SOAK_MINUTES=30 SOAK_SEED=7`.
soak: control-plane
	$(CARGO) build --release --quiet --locked -p groupbinder -p groupbinder-e2e --bins
	SOAK_MINUTES=$(SOAK_MINUTES) SOAK_SEED=$(SOAK_SEED) SOAK_LOG_LEVEL=$(SOAK_LOG_LEVEL) target/release/groupbinder-soak

## Keep a local control plane running until Ctrl-C.
up: control-plane
	$(CARGO) run --locked -p groupbinder-testenv -- up

## The same with a node that runs pods, and the image imported into it (root).
up-node: control-plane node-deps image
	$(CARGO) run --locked -p groupbinder-testenv -- up --node --image $(IMAGE_TAR)

## CI (.ci/run runs the same steps): lint, all tests, the demo, and no leftover processes.
ci: lint test demo demo-node leftovers

## Process names are cut to 15 characters: kube-controller-manager is kube-controller. The node's
## leftovers: its processes, shims and pods, bridges (gbt<pid>), iptables rules, mounts.
leftovers:
	@left=0; for name in etcd kube-apiserver kube-controller kube-scheduler kubelet containerd \
	    containerd-shim pause groupbinder; do \
	  if pgrep -a -x $$name; then left=1; fi; \
	done; \
	if ip -o link show 2>/dev/null | grep -E '^[0-9]+: gbt[0-9]+'; then left=1; fi; \
	if iptables-save 2>/dev/null | grep -E 'groupbinder-testenv|KUBE-'; then left=1; fi; \
	if grep groupbinder-testenv /proc/self/mountinfo; then left=1; fi; \
	if [ $$left = 1 ]; then echo "control-plane or node leftovers (above)"; exit 1; fi
	@echo "no control-plane or node process, interface, rule or mount left behind"
