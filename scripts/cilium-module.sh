#!/usr/bin/env bash
# Fetches the github.com/cilium/cilium Go module (source only; nothing is built)
# into the Go module cache, outside the repository, and prints its directory.
# Its Hubble protos and its CRD schemas and example policies are read from there
# by the build and the tests; nothing of it is copied into this repository.
#
#   scripts/cilium-module.sh            fetch if missing, print the module directory
#   scripts/cilium-module.sh --version  print the pinned version
set -euo pipefail

CILIUM_VERSION="v1.20.2"

if [ "${1:-}" = "--version" ]; then
  printf '%s\n' "$CILIUM_VERSION"
  exit 0
fi

# shellcheck source=scripts/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
GO_TOOL_NAME=cilium-module
go_tool_require_go 21 "the cilium module's download"

dir=$(go env GOMODCACHE)/github.com/cilium/cilium@$CILIUM_VERSION
if [ ! -f "$dir/go.mod" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # `go mod download` needs a module context for GOFLAGS=-mod=mod; a throwaway one.
  (cd "$work" && go mod init meshd-cilium-fetch >/dev/null 2>&1 \
    && go mod download "github.com/cilium/cilium@$CILIUM_VERSION") \
    || die "go mod download github.com/cilium/cilium@$CILIUM_VERSION failed"
fi
[ -f "$dir/go.mod" ] || die "module directory $dir missing after download"
printf '%s\n' "$dir"
