#!/usr/bin/env bash
# Builds a container image without a container engine: one layer holding one static binary, as a
# docker-archive tarball that `ctr images import`, `docker load` and `podman load` accept. The
# image's layout (where the binary goes, USER, EXPOSE, ENTRYPOINT, CMD) is read from the final
# stage of a Dockerfile, so that a Dockerfile and this script describe the same image.
#
#   tools/image.sh DOCKERFILE BINARY NAME:TAG OUT.tar
#
# Reproducible: the same binary gives the same archive (fixed timestamps and owners).
set -euo pipefail
dockerfile=${1:?usage: tools/image.sh DOCKERFILE BINARY NAME:TAG OUT.tar}
binary=${2:?usage}
tag=${3:?usage}
out=${4:?usage}

# The final stage: the lines after the last FROM.
stage=$(awk '/^FROM /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$dockerfile")
from=$(printf '%s' "$stage" | awk '/^FROM /{print $2; exit}')
[ "$from" = scratch ] || { echo "error: $dockerfile: final stage must be FROM scratch, not $from" >&2; exit 1; }
directive() { printf '%s' "$stage" | sed -n "s/^$1 //p" | tail -n 1; }
dest=$(directive COPY | awk '{print $NF}')
user=$(directive USER)
port=$(directive EXPOSE)
entrypoint=$(directive ENTRYPOINT)
cmd=$(directive CMD)
for v in dest user entrypoint cmd; do
  [ -n "${!v}" ] || { echo "error: $dockerfile: no ${v^^} in the final stage" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs$(dirname "$dest")" "$work/image"
install -m 0755 "$binary" "$work/rootfs$dest"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" .
layer=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mkdir "$work/image/$layer"
mv "$work/layer.tar" "$work/image/$layer/layer.tar"

exposed=""
[ -n "$port" ] && exposed="\"ExposedPorts\":{\"$port/tcp\":{}},"
cat > "$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"User":"$user",${exposed}"Env":["PATH=/"],"Entrypoint":$entrypoint,"Cmd":$cmd},"rootfs":{"type":"layers","diff_ids":["sha256:$layer"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"tools/image.sh $(basename "$dockerfile")"}]}
JSON
config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/image/$config.json"
printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]\n' "$config" "$tag" "$layer" > "$work/image/manifest.json"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/image" -cf "$out" .
echo "$out: $tag, image id sha256:$config" >&2
