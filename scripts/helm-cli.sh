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

cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
dir="$cache_root/helm/$HELM_VERSION"
bin="$dir/bin/helm"

if [ "${1:-}" = "--print-bin" ]; then
  printf '%s\n' "$bin"
  exit 0
fi

say() { printf 'helm-cli: %s\n' "$*" >&2; }
die() { printf 'helm-cli: error: %s\n' "$*" >&2; exit 1; }

have_version() {
  local v
  [ -x "$bin" ] || return 1
  v=$("$bin" version --template '{{.Version}}' 2>/dev/null || true)
  [ "$v" = "$HELM_VERSION" ]
}

if have_version; then
  exit 0
fi

command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && PATH="/usr/local/go/bin:$PATH"; } \
  || die "go not found on PATH or in /usr/local/go (needed to build helm)"
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ -n "$go_minor" ] && [ "$go_minor" -ge 21 ] || die "$(go env GOVERSION) is too old: Go 1.21 or later is needed"
# helm v4 says `go 1.26.0`; an older local go (1.21+) fetches that toolchain from the proxy.
[ "$go_minor" -ge 26 ] && export GOTOOLCHAIN=local

mkdir -p "$dir/bin"
exec 9>"$dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another build into $dir is running; waiting for it"; flock 9; }
  if have_version; then exit 0; fi
fi

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

# The build cache is worth nothing once the binary exists.
if [ "${MESHD_KEEP_GO_CACHE:-}" != 1 ]; then
  go clean -cache || say "go clean -cache failed (harmless; the build cache stays)"
fi
