# The same targets CI runs (.ci/run calls `make ci`). `make test` is the README's test command.
.PHONY: all control-plane test lint crds demo bench up ci leftovers

CARGO ?= cargo

all: lint test

## Build (or reuse from the cache) etcd, kube-apiserver, kube-controller-manager, kubectl, helm.
control-plane:
	tools/build-control-plane.sh

## Every test: unit tests and end-to-end tests on a real control plane.
test: control-plane
	$(CARGO) test --workspace --locked

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

## The benchmark (not part of CI): N=1000 by default, `make bench BENCH_ARGS="--n 5000"`.
bench: control-plane
	$(CARGO) build --release --quiet --locked -p groupbinder -p groupbinder-e2e --bins
	target/release/groupbinder-bench $(BENCH_ARGS)

## Keep a local control plane running until Ctrl-C.
up: control-plane
	$(CARGO) run --locked -p groupbinder-testenv -- up

## CI (.ci/run runs the same steps): lint, all tests, the demo, and no leftover processes.
ci: lint test demo leftovers

## Process names are cut to 15 characters: kube-controller-manager is kube-controller.
leftovers:
	@left=0; for name in etcd kube-apiserver kube-controller; do \
	  if pgrep -a -x $$name; then left=1; fi; \
	done; \
	if [ $$left = 1 ]; then echo "control-plane processes left behind (above)"; exit 1; fi
	@echo "no control-plane process left behind"
