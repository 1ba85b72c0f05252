#!/usr/bin/env bash
# Builds the real `helm` CLI (helm.sh/helm/v4, the module's cmd/helm, unchanged)
# from the Go module proxy into a cache outside the repository, beside the
# Kubernetes test binaries:
#
#   ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}/helm/<version>/bin/helm
#
# The install tests run `helm lint` and `helm template` on install/helm/meshd.
# Debian ships no helm. Idempotent: when the binary exists and reports the
# expected version it does nothing. A cold build takes a few minutes on two cores.
#
#   scripts/helm-cli.sh               build (or check) the binary
#   scripts/helm-cli.sh --print-bin   print the binary's path and exit
#
# helm's go.mod has no replace directives, so `go install module/cmd@version`
# builds it directly; the ldflags stamp the version as upstream's Makefile does
# (without them `helm version` reports only the minor version).
set -euo pipefail

HELM_MODULE="helm.sh/helm/v4"
HELM_VERSION="v4.3.1"

# shellcheck source=scripts/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"
go_tool_init helm-cli "helm/$HELM_VERSION" helm "$@"

have_version() {
  local v
  [ -x "$bin" ] || return 1
  v=$("$bin" version --template '{{.Version}}' 2>/dev/null || true)
  [ "$v" = "$HELM_VERSION" ]
}
have_version && exit 0

# helm v4 says `go 1.26.0`; an older local go (1.21+) fetches that toolchain from the proxy.
go_tool_require_go 21 helm
go_tool_lock have_version

say "building $HELM_MODULE/cmd/helm@$HELM_VERSION into $bin"
export CGO_ENABLED=0 GOBIN="$dir/bin.tmp"
rm -rf "$GOBIN"
go install -trimpath \
  -ldflags "-w -s -X $HELM_MODULE/internal/version.version=$HELM_VERSION -X $HELM_MODULE/internal/version.gitTreeState=clean" \
  "$HELM_MODULE/cmd/helm@$HELM_VERSION" || die "step 'go install helm' failed"
mv "$GOBIN/helm" "$bin"
rm -rf "$GOBIN"
have_version || die "step 'check' failed: $bin does not report $HELM_VERSION"
say "built $bin"

go_tool_clean_cache
