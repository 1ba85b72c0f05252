#!/usr/bin/env bash
# Fetches the Gateway API module (sigs.k8s.io/gateway-api) from the Go module
# proxy into Go's module cache and prints its directory. The CRDs meshd's
# tests install come from it (config/crd/standard and config/crd/experimental),
# and the conformance suite and its echo server are built from it.
#
#   scripts/gateway-api.sh             print the module's directory
#   scripts/gateway-api.sh --version   print the pinned version
#   scripts/gateway-api.sh --crds      print the directory of the standard CRDs
#
# v1.7.0's go.mod names Go 1.27: the go command takes that toolchain from the
# module proxy like any module (GOTOOLCHAIN below, this script only).
set -euo pipefail
cd "$(dirname "$0")/.."

GATEWAY_API_VERSION=v1.7.0
GO_TOOLCHAIN=go1.27.3

die() { printf 'gateway-api: error: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  --version) printf '%s\n' "$GATEWAY_API_VERSION"; exit 0 ;;
  ''|--crds) ;;
  *) die "unknown argument '$1' (use --version or --crds)" ;;
esac

command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && PATH="/usr/local/go/bin:$PATH"; } \
  || die "go not found on PATH or in /usr/local/go (needed to fetch sigs.k8s.io/gateway-api)"
export GOTOOLCHAIN=$GO_TOOLCHAIN GOFLAGS=-mod=mod

dir=$(cd "${TMPDIR:-/tmp}" && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || die "step 'go mod download sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION' failed"
[ -n "$dir" ] && [ -d "$dir" ] || die "go mod download gave no directory for sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"

if [ "${1:-}" = "--crds" ]; then
  [ -d "$dir/config/crd/standard" ] || die "$dir has no config/crd/standard"
  printf '%s\n' "$dir/config/crd/standard"
else
  printf '%s\n' "$dir"
fi
