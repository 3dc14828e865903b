#!/usr/bin/env bash
# Builds the pinned control-plane binaries (etcd, kube-apiserver, kube-controller-manager, kubectl,
# helm), promtool and actionlint, and the test node's (kubelet, kube-scheduler, the pause image) from their published Go
# modules, into a cache outside the clone keyed by version.
# Idempotent: a binary set that is already cached is reused. Prints the binary directory last.
#
#   tools/build-control-plane.sh            build what is missing
#   tools/build-control-plane.sh --kyverno  only Kyverno's admission and background controllers and
#                                           its CRDs, for the benchmark (not needed by make test)
#   GROUPBINDER_CACHE=/some/dir ...         cache somewhere else (default $XDG_CACHE_HOME/groupbinder)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is not installed (or not on PATH). The control plane is built from Go modules;" >&2
  echo "       install Go 1.26 or newer (for example: apt-get install golang-go, or your distribution's Go)." >&2
  exit 1
fi

cache=${GROUPBINDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/groupbinder}
bin="$cache/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
mkdir -p "$bin"
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
# Go's build cache for these packages is ~4 GB and worth nothing once the binaries are cached by
# version: it lives beside them while building and is removed after (a CI machine ran out of disk).
# One per run, so that two runs at once (the control plane and Kyverno) never remove each other's.
rm -rf "$cache/go-build.tmp" # left by an older version of this script
GOCACHE=$(mktemp -d "$cache/go-build.XXXXXX")
export GOCACHE
trap 'rm -rf "$GOCACHE"' EXIT
export CGO_ENABLED=0
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# build DIR LDFLAGS NAME=PACKAGE...: builds each PACKAGE of module tools/DIR into $bin/NAME,
# skipping the ones already cached (Go's build cache shares compiled packages between them).
build() {
  local dir=$1 ldflags=$2; shift 2
  local missing=() names=()
  for spec in "$@"; do
    [ -x "$bin/${spec%%=*}" ] || { names+=("${spec%%=*}"); missing+=("${spec#*=}"); }
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "cached: ${*%%=*}" >&2
    return
  fi
  echo "building ${names[*]} from ${missing[*]} (tools/$dir)" >&2
  local start=$SECONDS tmp i
  tmp=$(mktemp -d "$bin/.build.XXXXXX")
  for i in "${!missing[@]}"; do
    (cd "$here/$dir" && go build -ldflags "$ldflags" -o "$tmp/${names[$i]}" "${missing[$i]}")
    mv -f "$tmp/${names[$i]}" "$bin/"
  done
  rmdir "$tmp"
  echo "built ${names[*]} in $((SECONDS - start))s" >&2
}

# Kyverno, for the benchmark beside it: two binaries and its CRDs, their version in their names.
if [ "${1:-}" = "--kyverno" ]; then
  kyverno_ldflags="-s -w -X github.com/kyverno/kyverno/pkg/version.BuildVersion=$KYVERNO_VERSION"
  build kyverno "$kyverno_ldflags" \
    "kyverno-$KYVERNO_VERSION=github.com/kyverno/kyverno/cmd/kyverno" \
    "kyverno-background-controller-$KYVERNO_VERSION=github.com/kyverno/kyverno/cmd/background-controller"
  crds="$bin/kyverno-crds-$KYVERNO_VERSION"
  if [ ! -d "$crds" ]; then
    module=$(cd "$here/kyverno" && go list -m -f '{{.Dir}}' github.com/kyverno/kyverno)
    mkdir -p "$crds.tmp"
    cp "$module"/config/crds/kyverno/*.yaml "$module"/config/crds/reports/*.yaml \
      "$module"/config/crds/policyreport/*.yaml "$module"/config/crds/policies.kyverno.io/*.yaml "$crds.tmp/"
    chmod u+w "$crds.tmp"/*.yaml
    mv "$crds.tmp" "$crds"
  fi
  echo "$bin"
  exit 0
fi

build etcd "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" etcd=go.etcd.io/etcd/server/v3

k8s_minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
build k8s "$k8s_ldflags" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
  kubectl=k8s.io/kubernetes/cmd/kubectl \
  kubelet=k8s.io/kubernetes/cmd/kubelet \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler

helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
build helm "$helm_ldflags" helm=helm.sh/helm/v3/cmd/helm

# promtool, for the chart's PrometheusRule tests: its version is in its name, in the same cache.
build promtool "-s -w" "promtool-$PROMETHEUS_VERSION=github.com/prometheus/prometheus/cmd/promtool"

# actionlint, for the release workflow's test: the same.
build actionlint "-s -w" "actionlint-$ACTIONLINT_VERSION=github.com/rhysd/actionlint/cmd/actionlint"

# The node's pod sandbox image: a static program that sleeps, in a one-layer image.
build pause "-s -w" pause=groupbinder.dev/tools/pause
if [ ! -f "$bin/pause.tar" ] || [ "$bin/pause" -nt "$bin/pause.tar" ]; then
  "$here/image.sh" "$here/pause/Dockerfile" "$bin/pause" localhost/groupbinder-testenv/pause:1 "$bin/pause.tar.tmp"
  mv -f "$bin/pause.tar.tmp" "$bin/pause.tar"
fi

# First line of each version report (sed reads everything, so no SIGPIPE under pipefail).
for cmd in "kube-apiserver --version" "kubectl version --client=true" "etcd --version" "helm version --short"; do
  # shellcheck disable=SC2086
  "$bin"/$cmd 2>&1 | sed -n 1p >&2
done
echo "$bin"
