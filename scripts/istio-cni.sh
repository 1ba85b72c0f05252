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

cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
dir="$cache_root/istio-cni/$ISTIO_VERSION"
bin="$dir/bin/istio-cni"

if [ "${1:-}" = "--print-bin" ]; then
  printf '%s\n' "$bin"
  exit 0
fi

say() { printf 'istio-cni: %s\n' "$*" >&2; }
die() { printf 'istio-cni: error: %s\n' "$*" >&2; exit 1; }

have_build() { [ -x "$bin" ] && [ "$(cat "$dir/bin/.version" 2>/dev/null || true)" = "$ISTIO_VERSION" ]; }

if have_build; then
  exit 0
fi

command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && PATH="/usr/local/go/bin:$PATH"; } \
  || die "go not found on PATH or in /usr/local/go (needed to build istio-cni)"
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ -n "$go_minor" ] && [ "$go_minor" -ge 26 ] || die "$(go env GOVERSION) is too old: Go 1.26 or later is needed"
export GOTOOLCHAIN=local

mkdir -p "$dir/bin" "$dir/src"
exec 9>"$dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another build into $dir is running; waiting for it"; flock 9; }
  if have_build; then exit 0; fi
fi

say "building $ISTIO_MODULE/cni/cmd/istio-cni@$ISTIO_VERSION into $bin (a cold build takes several minutes on two cores)"
cd "$dir/src"
printf 'module meshd.test/istio-cni-build\n\ngo 1.26\n' > go.mod
printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cni/cmd/istio-cni"\n' "$ISTIO_MODULE" > tools.go
export GOFLAGS=-mod=mod CGO_ENABLED=0
go get "$ISTIO_MODULE@$ISTIO_VERSION" || die "step 'go get' failed"
go mod tidy || die "step 'go mod tidy' failed"
go build -trimpath -ldflags "-w -s" -o "$bin.tmp" "$ISTIO_MODULE/cni/cmd/istio-cni" || die "step 'go build istio-cni' failed"
mv "$bin.tmp" "$bin"
printf '%s\n' "$ISTIO_VERSION" > "$dir/bin/.version"
say "built $bin"

if [ "${MESHD_KEEP_GO_CACHE:-}" != 1 ]; then
  go clean -cache || say "go clean -cache failed (harmless; the build cache stays)"
fi
