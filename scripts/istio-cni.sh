#!/usr/bin/env bash
# Builds Istio's real CNI plugin (`istio-cni`, the module's cni/cmd/istio-cni,
# unchanged) from the Go module proxy into a cache outside the repository:
#
#   ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}/istio-cni/<version>/bin/istio-cni
#
# test/integration/istio-cni.test.ts chains it after meshd-cni. Debian ships no
# Istio. istio.io/istio has no tagged module versions on the proxy (its tags
# are not semver-module tags), so the version is a pseudo-version of its main
# branch; `go install module/cmd@version` refuses a module whose go.mod has
# replace directives, so a wrapper module requires it and `go mod tidy` +
# `go build` resolve its dependencies by Go's minimal version selection.
# Idempotent: when the binary and its stamp exist it does nothing.
#
#   scripts/istio-cni.sh               build (or check) the binary
#   scripts/istio-cni.sh --print-bin   print the binary's path and exit
set -euo pipefail

ISTIO_MODULE="istio.io/istio"
ISTIO_VERSION="v0.0.0-20260827124520-eed52ebb66ad"

# shellcheck source=scripts/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
go_tool_init istio-cni "istio-cni/$ISTIO_VERSION" istio-cni "$@"

have_build() { [ -x "$bin" ] && [ "$(cat "$dir/bin/.version" 2>/dev/null || true)" = "$ISTIO_VERSION" ]; }
have_build && exit 0

go_tool_require_go 26 istio-cni
mkdir -p "$dir/src"
go_tool_lock have_build

say "building $ISTIO_MODULE/cni/cmd/istio-cni@$ISTIO_VERSION into $bin (a cold build takes several minutes on two cores)"
cd "$dir/src"
go_tool_wrapper_module . meshd.test/istio-cni-build 1.26
printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cni/cmd/istio-cni"\n' "$ISTIO_MODULE" > tools.go
export GOFLAGS=-mod=mod CGO_ENABLED=0
go get "$ISTIO_MODULE@$ISTIO_VERSION" || die "step 'go get' failed"
go mod tidy || die "step 'go mod tidy' failed"
go build -trimpath -ldflags "-w -s" -o "$bin.tmp" "$ISTIO_MODULE/cni/cmd/istio-cni" || die "step 'go build istio-cni' failed"
mv "$bin.tmp" "$bin"
printf '%s\n' "$ISTIO_VERSION" > "$dir/bin/.version"
say "built $bin"

go_tool_clean_cache
