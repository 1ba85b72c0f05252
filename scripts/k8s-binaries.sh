#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries the tests run against: kube-apiserver,
# kube-controller-manager and kubectl (k8s.io/kubernetes) and etcd
# (go.etcd.io/etcd/server/v3), from the Go module proxy, into a cache outside the
# repository:
#
#   ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}/k8s/v<KUBE_VERSION>/bin/
#
# Idempotent: when the four binaries exist and report the expected versions it does
# nothing; otherwise it builds only the ones missing or stale. A cold build takes
# ~15 minutes on two cores (~2.2 GB of memory at peak).
#
#   scripts/k8s-binaries.sh                  build (or check) the binaries
#   scripts/k8s-binaries.sh --print-bin-dir  print the binary directory and exit
#
# `go install pkg@version` refuses k8s.io/kubernetes (its go.mod has replace
# directives into its staging tree), so a wrapper module is generated that requires
# it and points every staging module at its published v0.<minor>.<patch> release.
# etcd gets a wrapper main around etcdmain. Wrappers live in the cache, never here.
set -euo pipefail

KUBE_VERSION="v1.37.2"
ETCD_VERSION="v3.7.3"
# The Go toolchain fetched when the local one is older than the modules need.
GO_TOOLCHAIN="go1.26.8"

cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
k8s_dir="$cache_root/k8s/$KUBE_VERSION"
bin_dir="$k8s_dir/bin"

if [ "${1:-}" = "--print-bin-dir" ]; then
  printf '%s\n' "$bin_dir"
  exit 0
fi

say() { printf 'k8s-binaries: %s\n' "$*" >&2; }
die() { printf 'k8s-binaries: error: %s\n' "$*" >&2; exit 1; }

# The Kubernetes commands built from k8s.io/kubernetes/cmd/<name>.
KUBE_CMDS="kube-apiserver kube-controller-manager kubectl"

# Succeeds when the named binary exists and reports the version above.
has_version() {
  local out
  [ -x "$bin_dir/$1" ] || return 1
  case "$1" in
    kubectl) out=$("$bin_dir/kubectl" version --client 2>/dev/null || true)
      [[ "$out" == *"Client Version: $KUBE_VERSION"* ]] ;;
    etcd) out=$("$bin_dir/etcd" --version 2>/dev/null || true)
      [[ "$out" == *"etcd Version: ${ETCD_VERSION#v}"* ]] ;;
    *) out=$("$bin_dir/$1" --version 2>/dev/null || true)
      [[ "$out" == "Kubernetes $KUBE_VERSION" ]] ;;
  esac
}

# Succeeds when every binary exists and reports the versions above.
have_versions() {
  local b
  for b in $KUBE_CMDS etcd; do has_version "$b" || return 1; done
}

if have_versions; then
  exit 0
fi

# Go from the official tarball lives in /usr/local/go, which non-login shells may not have on PATH.
command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && PATH="/usr/local/go/bin:$PATH"; } \
  || die "go not found on PATH or in /usr/local/go (needed to build kube-apiserver, kube-controller-manager, kubectl and etcd)"
# Both modules say `go 1.26`; an older local go (1.21 or later) fetches that toolchain from the
# module proxy itself when asked to.
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ -n "$go_minor" ] || die "could not read the version of $(command -v go)"
if [ "$go_minor" -ge 26 ]; then
  export GOTOOLCHAIN=local
elif [ "$go_minor" -ge 21 ]; then
  export GOTOOLCHAIN=$GO_TOOLCHAIN
  say "local $(go env GOVERSION) is older than the modules need; using $GO_TOOLCHAIN from the module proxy"
else
  die "$(go env GOVERSION) is too old: install Go 1.26 or later (or 1.21+, which downloads it)"
fi

# One build at a time per cache (two checkouts may run setup at once); whoever waited
# finds the binaries built and stops here.
mkdir -p "$k8s_dir"
exec 9>"$k8s_dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another build into $k8s_dir is running; waiting for it"; flock 9; }
  if have_versions; then exit 0; fi
fi
say "building kube-apiserver, kube-controller-manager, kubectl ($KUBE_VERSION) and etcd ($ETCD_VERSION) into $bin_dir"
say "a cold build takes ~15 minutes on two cores and ~2.2 GB of memory; later runs reuse it"

export GOFLAGS=-mod=mod CGO_ENABLED=0
src_dir="$k8s_dir/src"
mkdir -p "$bin_dir" "$src_dir"

# Kubernetes wrapper module ----------------------------------------------------------
kube_mod="$src_dir/kubernetes"
mkdir -p "$kube_mod"
kube_info=$(cd "$src_dir" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$KUBE_VERSION") \
  || die "step 'download k8s.io/kubernetes@$KUBE_VERSION' failed"
kube_gomod=$(printf '%s\n' "$kube_info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
kube_infofile=$(printf '%s\n' "$kube_info" | sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p')
[ -f "$kube_gomod" ] && [ -f "$kube_infofile" ] \
  || die "step 'read go.mod of k8s.io/kubernetes@$KUBE_VERSION' failed: not in the module cache"
# The release's commit time stands in for the build date, so rebuilds are reproducible.
kube_time=$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "$kube_infofile")

staging_version="v0.${KUBE_VERSION#v1.}"
staging=$(sed -n '/^replace (/,/^)/p' "$kube_gomod" \
  | awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' | grep -v '^k8s.io/sample-' || true)
[ -n "$staging" ] || die "step 'read the staging replace block of k8s.io/kubernetes@$KUBE_VERSION' found no modules"
go_directive=$(awk '$1 == "go" { print $2; exit }' "$kube_gomod")

{
  printf 'module meshd.local/k8s-binaries\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
    "$go_directive" "$KUBE_VERSION"
  for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
  printf ')\n'
} > "$kube_mod/go.mod"
# go.sum is regenerated from the proxy and checked against the checksum database.
rm -f "$kube_mod/go.sum"

major=${KUBE_VERSION#v}; major=${major%%.*}
minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$kube_time"
done

for cmd in $KUBE_CMDS; do
  if has_version "$cmd"; then continue; fi
  say "go build k8s.io/kubernetes/cmd/$cmd"
  (cd "$kube_mod" && go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
    -o "$bin_dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd") || die "step 'go build $cmd' failed"
  mv "$bin_dir/$cmd.tmp" "$bin_dir/$cmd"
done

# etcd wrapper main ------------------------------------------------------------------
if ! has_version etcd; then
etcd_mod="$src_dir/etcd"
mkdir -p "$etcd_mod"
cat > "$etcd_mod/main.go" <<'EOF'
// Command etcd is etcd's own main, built from its published module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
printf 'module meshd.local/etcd\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$etcd_mod/go.mod"
rm -f "$etcd_mod/go.sum"
say "go build go.etcd.io/etcd/server/v3/etcdmain"
(cd "$etcd_mod" && go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd.tmp" .) \
  || die "step 'go build etcd' failed"
mv "$bin_dir/etcd.tmp" "$bin_dir/etcd"
fi

have_versions || die "step 'check versions' failed: the built binaries do not report $KUBE_VERSION / $ETCD_VERSION"
say "built into $bin_dir"

# The build cache (~4 GB) is worth nothing once the binaries exist.
if [ "${MESHD_KEEP_GO_CACHE:-}" != 1 ]; then
  go clean -cache || say "go clean -cache failed (harmless; the build cache stays)"
fi
