#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries the tests run against: kube-apiserver
# and kubectl (k8s.io/kubernetes) and etcd (go.etcd.io/etcd/server/v3), from the Go
# module proxy, into a cache outside the repository:
#
#   ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}/k8s/v<KUBE_VERSION>/bin/
#
# Idempotent: when the three binaries exist and report the expected versions it does
# nothing. A cold build takes ~10 minutes on two cores (~2.2 GB of memory at peak).
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

cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
k8s_dir="$cache_root/k8s/$KUBE_VERSION"
bin_dir="$k8s_dir/bin"

if [ "${1:-}" = "--print-bin-dir" ]; then
  printf '%s\n' "$bin_dir"
  exit 0
fi

say() { printf 'k8s-binaries: %s\n' "$*" >&2; }
die() { printf 'k8s-binaries: error: %s\n' "$*" >&2; exit 1; }

# The version each binary reports, or nothing when it is missing or broken.
have_versions() {
  local api ctl etcd
  [ -x "$bin_dir/kube-apiserver" ] && [ -x "$bin_dir/kubectl" ] && [ -x "$bin_dir/etcd" ] || return 1
  api=$("$bin_dir/kube-apiserver" --version 2>/dev/null || true)
  ctl=$("$bin_dir/kubectl" version --client 2>/dev/null || true)
  etcd=$("$bin_dir/etcd" --version 2>/dev/null || true)
  [[ "$api" == "Kubernetes $KUBE_VERSION" ]] || return 1
  [[ "$ctl" == *"Client Version: $KUBE_VERSION"* ]] || return 1
  [[ "$etcd" == *"etcd Version: ${ETCD_VERSION#v}"* ]] || return 1
}

if have_versions; then
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go not found on PATH (needed to build kube-apiserver, kubectl and etcd)"
say "building kube-apiserver, kubectl ($KUBE_VERSION) and etcd ($ETCD_VERSION) into $bin_dir"
say "a cold build takes ~10 minutes on two cores and ~2.2 GB of memory; later runs reuse it"

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
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

for cmd in kube-apiserver kubectl; do
  say "go build k8s.io/kubernetes/cmd/$cmd"
  (cd "$kube_mod" && go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
    -o "$bin_dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd") || die "step 'go build $cmd' failed"
  mv "$bin_dir/$cmd.tmp" "$bin_dir/$cmd"
done

# etcd wrapper main ------------------------------------------------------------------
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

have_versions || die "step 'check versions' failed: the built binaries do not report $KUBE_VERSION / $ETCD_VERSION"
say "built into $bin_dir"

# The build cache (~4 GB) is worth nothing once the binaries exist.
if [ "${MESHD_KEEP_GO_CACHE:-}" != 1 ]; then
  go clean -cache || say "go clean -cache failed (harmless; the build cache stays)"
fi
