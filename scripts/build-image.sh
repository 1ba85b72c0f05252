#!/usr/bin/env bash
# Builds the agent image docker.io/meshd/meshd:<package.json version> from the
# repository's Dockerfile with podman, on a machine that reaches Debian's
# archive and the language registries (npm, PyPI, the Go module proxy) but no
# container registry. The Dockerfile's base images are build arguments whose
# defaults are the public images (node, golang, python on Docker Hub); this
# script passes local stand-ins for them instead:
#
#   localhost/meshd-base/debian:bookworm         debootstrap --variant=minbase bookworm
#                                                from deb.debian.org, imported
#   localhost/meshd-base/debian:bookworm-build   that + ca-certificates and this machine's
#                                                extra CA certificates (below)
#   localhost/meshd-base/node:<v>-bookworm       bookworm-build + this machine's own Node.js 20
#                                                (binary, headers, npm) in /usr/local
#   localhost/meshd-base/node:<v>-bookworm-slim  bookworm + the node binary only (runtime base)
#   localhost/meshd-base/golang:<v>-bookworm     bookworm-build + this machine's Go installation
#   localhost/meshd-base/python:3-bookworm       bookworm-build + Debian's python3 and venv
#
# The build stages reach npm, PyPI and the Go module proxy the way this machine
# does: where its HTTPS goes through a proxy with its own CA, the certificates
# this machine added (/usr/local/share/ca-certificates/*.crt) go into the
# bookworm-build base. The runtime base never carries them, so the image
# ships Debian's CA set only.
#
# Nothing is downloaded as a binary: Node.js and Go are the ones already
# installed here (Node.js must be v20, Go 1.21 or later); everything else comes
# from Debian's archive and the registries, pinned by package-lock.json, the
# Envoy version and the cilium module version. The debootstrap tree is cached
# outside the repository:
#
#   ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}/image/
#
# and the images stay in podman's store. The image carries a label with a hash
# of its inputs (the build context's files, the Dockerfile, the base images'
# ids): when an image of that tag with that hash exists, nothing is rebuilt.
#
#   scripts/build-image.sh                build (or find) the image; prints its id on stdout
#   scripts/build-image.sh --print-ref    print the image reference and exit
#   scripts/build-image.sh --inputs-hash  print the inputs' hash (builds the base images if missing)
#   scripts/build-image.sh --run-flags    print the podman flags this machine needs to run a
#                                         container, one a line (the image test uses them)
#
# Environment: MESHD_IMAGE_PUBLIC_BASES=1 builds FROM the public base images
# (the Dockerfile's defaults, pulled by podman) instead of the local stand-ins,
# without the inputs' hash.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^  "version": "\([^"]*\)",$/\1/p' package.json | head -n1)
IMAGE="docker.io/meshd/meshd:${VERSION}"
BASE_PREFIX="localhost/meshd-base"
SUITE=bookworm
MIRROR="http://deb.debian.org/debian"

say() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

# Flags for podman's RUN steps and containers on this machine:
# - with cgroups in hybrid mode (v1 controllers, v2 mounted beside them) crun
#   refuses to create a container; runc works there;
# - without CAP_SYS_RESOURCE podman's default limits (1048576 open files and
#   processes) cannot be set; the container gets the caller's own hard limits
#   instead (processes at most 32768, the limit podman falls back to itself).
run_flags() {
  if [ -f /sys/fs/cgroup/unified/cgroup.controllers ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    command -v runc >/dev/null 2>&1 || die "cgroups are in hybrid mode here, where crun refuses to run containers; install runc (apt-get install runc)"
    printf '%s\n' --runtime runc
  fi
  local eff
  eff=$(awk '$1 == "CapEff:" { print $2 }' /proc/self/status)
  if (( (0x$eff >> 24 & 1) == 0 )); then
    local nofile nproc
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
    printf '%s\n' --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc"
  fi
}

case "${1:-}" in
  --print-ref) printf '%s\n' "$IMAGE"; exit 0 ;;
  --run-flags) run_flags; exit 0 ;;
  --inputs-hash | "") ;;
  *) printf 'usage: %s [--print-ref|--inputs-hash|--run-flags]\n' "$0" >&2; exit 2 ;;
esac
[ -n "$VERSION" ] || die "no \"version\" in package.json"

cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
dir="$cache_root/image"
mkdir -p "$dir"
exec 9>"$dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another image build is running; waiting for it"; flock 9; }
fi
started=$(date +%s)

# 1. Tools: podman (with buildah inside) and debootstrap, from Debian.
if ! command -v podman >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "podman and debootstrap are needed (apt-get install podman debootstrap) and installing them needs root"
  say "installing podman and debootstrap from Debian's archive (apt-get install podman debootstrap)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends podman buildah debootstrap crun runc fuse-overlayfs netavark >/dev/null \
    || die "apt-get install podman debootstrap failed"
fi
[ "$(id -u)" = 0 ] || die "building the image needs root here (debootstrap, and podman's overlay storage)"
mapfile -t podman_run_flags < <(run_flags)

if [ "${MESHD_IMAGE_PUBLIC_BASES:-}" = 1 ]; then
  # The Dockerfile's defaults: the public base images, which podman pulls (layers cache the rest).
  say "building $IMAGE from the public base images"
  podman build --network host "${podman_run_flags[@]}" --layers --label "org.opencontainers.image.version=$VERSION" \
    -t "$IMAGE" -f Dockerfile . >&2 || die "podman build failed"
  podman image inspect --format '{{.Id}}' "$IMAGE"
  exit 0
fi

# 2. The Debian base: debootstrap once, import as an image.
base_image="$BASE_PREFIX/debian:$SUITE"
base_tar="$dir/base/debian-$SUITE-minbase.tar"
if [ ! -f "$base_tar" ]; then
  say "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes, once)"
  mkdir -p "$dir/base"
  root="$dir/base/rootfs.tmp"
  rm -rf "$root"
  debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$dir/base/debootstrap.log" 2>&1 \
    || die "debootstrap $SUITE failed (log: $dir/base/debootstrap.log)"
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  # As Debian's own container images: no package lists, no caches, no logs.
  rm -rf "${root:?}"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/var/log/apt/* "${root:?}"/tmp/* "${root:?}"/dev/*
  epoch=$(date -d "$(date -u +%Y-%m-%d)" +%s)
  tar --sort=name --numeric-owner --mtime="@$epoch" --clamp-mtime --xattrs -C "$root" -cf "$base_tar.tmp" . \
    || die "packing the debootstrap tree failed"
  mv "$base_tar.tmp" "$base_tar"
  rm -rf "$root"
fi
if ! podman image exists "$base_image"; then
  say "importing $base_tar as $base_image"
  podman import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$base_tar" "$base_image" >/dev/null || die "podman import of $base_tar failed"
fi

build_standin() { # tag context containerfile-text
  local tag=$1 context=$2 file
  file="$dir/standins/$(printf '%s' "$1" | tr '/:' '__').Containerfile"
  mkdir -p "$dir/standins"
  printf '%s\n' "$3" >"$file"
  podman build -q --network host "${podman_run_flags[@]}" --layers --pull=never -t "$tag" -f "$file" "$context" >/dev/null \
    || die "building the base image $tag failed"
}

# 3. The stand-ins for the public node, golang and python images.
node_bin=$(command -v node) || die "node not found: Node.js 20 is needed (the image's Node.js is this machine's own)"
node_version=$("$node_bin" --version)
[[ "$node_version" == v20.* ]] || die "node is $node_version: the image needs Node.js 20 (the version the project supports)"
node_prefix=$(dirname "$(dirname "$(readlink -f "$node_bin")")")
[ -f "$node_prefix/include/node/node_api.h" ] && [ -f "$node_prefix/lib/node_modules/npm/bin/npm-cli.js" ] \
  || die "$node_prefix has no include/node or lib/node_modules/npm: the Node.js installation must include its headers and npm"
go_bin=$(command -v go || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; }) || die "go not found on PATH or in /usr/local/go"
go_version=$("$go_bin" env GOVERSION)
go_minor=$(printf '%s' "$go_version" | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ -n "$go_minor" ] && [ "$go_minor" -ge 21 ] || die "$go_version is too old: Go 1.21 or later is needed"
goroot=$("$go_bin" env GOROOT)

build_base_image="$base_image-build"
node_image="$BASE_PREFIX/node:${node_version#v}-$SUITE"
node_slim_image="$node_image-slim"
go_image="$BASE_PREFIX/golang:${go_version#go}-$SUITE"
python_image="$BASE_PREFIX/python:3-$SUITE"

node_ctx="$dir/node-$node_version"
if [ ! -f "$node_ctx/node.tar" ] || [ ! -f "$node_ctx/node-slim.tar" ]; then
  mkdir -p "$node_ctx"
  tar --sort=name --numeric-owner -C "$node_prefix" -cf "$node_ctx/node.tar.tmp" bin/node include/node lib/node_modules/npm \
    && tar --sort=name --numeric-owner -C "$node_prefix" -cf "$node_ctx/node-slim.tar.tmp" bin/node \
    || die "packing Node.js from $node_prefix failed"
  mv "$node_ctx/node.tar.tmp" "$node_ctx/node.tar"
  mv "$node_ctx/node-slim.tar.tmp" "$node_ctx/node-slim.tar"
fi
ca_ctx="$dir/extra-ca"
rm -rf "$ca_ctx" && mkdir -p "$ca_ctx"
for c in /usr/local/share/ca-certificates/*.crt; do [ -f "$c" ] && cp "$c" "$ca_ctx/"; done
ca_sum=$(cat "$ca_ctx"/*.crt 2>/dev/null | sha256sum | cut -c1-12)
if ! podman image exists "$build_base_image" \
  || [ "$(podman image inspect --format '{{index .Labels "io.meshd.extra-ca"}}' "$build_base_image")" != "$ca_sum" ]; then
  podman rmi -f "$node_image" "$go_image" "$python_image" >/dev/null 2>&1 || true
  build_standin "$build_base_image" "$ca_ctx" "FROM $base_image
LABEL io.meshd.extra-ca=$ca_sum
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*
COPY . /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
fi
if ! podman image exists "$node_image" || ! podman image exists "$node_slim_image" \
  || ! podman image exists "$go_image" || ! podman image exists "$python_image"; then
  say "building the local base images ($node_image, $go_image, $python_image)"
fi
podman image exists "$node_image" || build_standin "$node_image" "$node_ctx" "FROM $build_base_image
ADD node.tar /usr/local/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
 && node --version | grep -q '^v20\\.' && npm --version >/dev/null"
podman image exists "$node_slim_image" || build_standin "$node_slim_image" "$node_ctx" "FROM $base_image
ADD node-slim.tar /usr/local/
RUN node --version | grep -q '^v20\\.'"
podman image exists "$go_image" || build_standin "$go_image" "$goroot" "FROM $build_base_image
COPY . /usr/local/go
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GOTOOLCHAIN=local
RUN go version"
podman image exists "$python_image" || build_standin "$python_image" "$dir/standins" "FROM $build_base_image
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null && rm -rf /var/lib/apt/lists/*"

build_args=(--pull=never
  --build-arg "NODE_IMAGE=$node_image" --build-arg "NODE_RUNTIME_IMAGE=$node_slim_image"
  --build-arg "GO_IMAGE=$go_image" --build-arg "PYTHON_IMAGE=$python_image")

# 4. The inputs' hash: every file the build context sends (the directories the
#    Dockerfile copies, without what .dockerignore leaves out: tests; taken from
#    git's view: tracked and untracked-but-not-ignored files), the base images'
#    ids and the build arguments.
inputs_hash=$(
  {
    git ls-files -z --cached --others --exclude-standard -- Dockerfile .dockerignore package.json package-lock.json tsconfig.json \
      bpf native scripts src xds envoy bin install ':!:*.test.ts' \
      | sort -z | xargs -0 -r sha256sum 2>/dev/null
    printf '%s\n' "${build_args[@]}"
    for i in "$node_image" "$node_slim_image" "$go_image" "$python_image"; do podman image inspect --format '{{.Id}}' "$i"; done
  } | sha256sum | cut -d' ' -f1
)
if [ "${1:-}" = "--inputs-hash" ]; then
  printf '%s\n' "$inputs_hash"
  exit 0
fi

if podman image exists "$IMAGE" \
  && [ "$(podman image inspect --format '{{index .Labels "io.meshd.inputs"}}' "$IMAGE")" = "$inputs_hash" ]; then
  podman image inspect --format '{{.Id}}' "$IMAGE"
  exit 0
fi

# 5. The image. Host network for the build's RUN steps: no bridge or NAT rules
#    on the build machine, and the registries are reached as the host reaches them.
say "building $IMAGE (inputs $inputs_hash)"
podman build --network host "${podman_run_flags[@]}" --layers "${build_args[@]}" \
  --label "io.meshd.inputs=$inputs_hash" --label "org.opencontainers.image.version=$VERSION" \
  -t "$IMAGE" -f Dockerfile . >&2 || die "podman build failed"
podman image inspect --format '{{.Id}}' "$IMAGE"
say "built $IMAGE in $(( $(date +%s) - started )) s"
