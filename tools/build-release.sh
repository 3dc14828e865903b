#!/usr/bin/env bash
# Builds the release binary that goes into groupbinder's image: static (glibc linked in, so it
# runs on an empty base image), optimised, from the locked dependencies. The Dockerfile and
# `make image` both run this script, so the image holds the same binary either way.
#
#   tools/build-release.sh OUT      build and copy the binary to OUT
set -euo pipefail
out=${1:?usage: tools/build-release.sh OUT}
cd "$(dirname "$0")/.."
# The machine's own target (x86_64 or aarch64): the release workflow builds the arm64 image with
# the same Dockerfile under emulation.
target=${GROUPBINDER_TARGET:-$(uname -m)-unknown-linux-gnu}
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked -p groupbinder --target "$target"
install -m 0755 "target/$target/release/groupbinder" "$out"
