#!/usr/bin/env bash
# Builds the upstream Gateway API conformance suite and its echo server from the
# Go module proxy into a cache outside the repository:
#
#   ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}/gateway-conformance/<version>/bin/
#     conformance.test   the suite (sigs.k8s.io/gateway-api/conformance <version>)
#     echo-basic         the backend the suite's manifests run (image echo-basic:v0.x)
#
# Idempotent: when both binaries exist and run it does nothing. A cold build takes
# ~4 minutes on two cores. test/conformance/gateway.ts runs the result.
#
#   scripts/gateway-conformance.sh               build (or check) both binaries
#   scripts/gateway-conformance.sh --echo-basic  build (or check) echo-basic only: what
#                                                `npm test` needs (setup runs this); the
#                                                suite is built by `npm run test:gateway-conformance`
#   scripts/gateway-conformance.sh --print-bin-dir  print the binary directory and exit
#
# The suite is built the way the upstream docs tell implementations to run it from
# their own repository: a test package that calls conformance.RunConformance(t),
# compiled with `go test -c`, so every upstream flag (--gateway-class,
# --supported-features, --report-output, ...) is the suite's own.
#
# echo-basic: from v1.7.0 on its source lives in the separate module
# sigs.k8s.io/gateway-api-conformance-images (see below for when the proxy lacks it).
set -euo pipefail
cd "$(dirname "$0")/.."

GATEWAY_API_VERSION=$(bash scripts/gateway-api.sh --version)
ECHO_BASIC_VERSION=v1.6.3
# The modules say `go 1.27`; the go command takes that toolchain from the module proxy.
GO_TOOLCHAIN=go1.27.3

cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
dir="$cache_root/gateway-conformance/$GATEWAY_API_VERSION"
bin_dir="$dir/bin"

if [ "${1:-}" = "--print-bin-dir" ]; then
  printf '%s\n' "$bin_dir"
  exit 0
fi
want_suite=1
case "${1:-}" in
  "") ;;
  --echo-basic) want_suite=0 ;;
  *) printf 'gateway-conformance: error: unknown argument %s (use --echo-basic or --print-bin-dir)\n' "$1" >&2; exit 2 ;;
esac

say() { printf 'gateway-conformance: %s\n' "$*" >&2; }
die() { printf 'gateway-conformance: error: %s\n' "$*" >&2; exit 1; }

# The suite lists its tests without a cluster; echo-basic has no version flag, so
# a binary that exists and is executable is taken as built (it is replaced atomically).
suite_built() {
  [ -x "$bin_dir/conformance.test" ] \
    && "$bin_dir/conformance.test" -test.list 'TestConformance' 2>/dev/null | grep -qx TestConformance
}
built() {
  [ -x "$bin_dir/echo-basic" ] && { [ "$want_suite" = 0 ] || suite_built; }
}

if built; then
  exit 0
fi

command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && PATH="/usr/local/go/bin:$PATH"; } \
  || die "go not found on PATH or in /usr/local/go (needed to build the conformance suite)"
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ -n "$go_minor" ] && [ "$go_minor" -ge 21 ] || die "$(go env GOVERSION) is too old: Go 1.21 or later is needed"
export GOTOOLCHAIN=$GO_TOOLCHAIN GOFLAGS=-mod=mod CGO_ENABLED=0

mkdir -p "$bin_dir" "$dir/src"
exec 9>"$dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another build into $dir is running; waiting for it"; flock 9; }
  if built; then exit 0; fi
fi
if [ "$want_suite" = 1 ]; then
  say "building the Gateway API conformance suite $GATEWAY_API_VERSION and echo-basic into $bin_dir"
else
  say "building echo-basic (for the Gateway API conformance suite $GATEWAY_API_VERSION) into $bin_dir"
fi

# The conformance module replaces sigs.k8s.io/gateway-api with its parent directory,
# which a dependent module does not inherit: the wrappers require the API module at
# the same version instead.
#
# The suite imports the echo server's gRPC, TCP and UDP packages from
# sigs.k8s.io/gateway-api-conformance-images (pinned in its go.mod). When the module
# proxy serves that version it is used as is, and echo-basic is built from it. When
# it does not (the proxy answers 403 for it), a module of that path is assembled in
# the cache from the same packages' last published copy, conformance/echo-basic of
# sigs.k8s.io/gateway-api/conformance $ECHO_BASIC_VERSION, with only the import paths
# rewritten, and both binaries use it.
mod_dir() {
  (cd "$dir/src" && go mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}
suite_dir=$(mod_dir "sigs.k8s.io/gateway-api/conformance@$GATEWAY_API_VERSION")
[ -n "$suite_dir" ] || die "step 'download sigs.k8s.io/gateway-api/conformance@$GATEWAY_API_VERSION' failed"
images_version=$(awk '$1 == "sigs.k8s.io/gateway-api-conformance-images" { print $2; exit }' "$suite_dir/go.mod")
[ -n "$images_version" ] || die "$suite_dir/go.mod names no sigs.k8s.io/gateway-api-conformance-images version"
images_replace=""
if (cd "$dir/src" && go mod download "sigs.k8s.io/gateway-api-conformance-images@$images_version") >/dev/null 2>&1; then
  say "using sigs.k8s.io/gateway-api-conformance-images@$images_version from the module proxy"
else
  say "sigs.k8s.io/gateway-api-conformance-images@$images_version is not on the module proxy; assembling it from sigs.k8s.io/gateway-api/conformance@$ECHO_BASIC_VERSION/echo-basic"
  old_dir=$(mod_dir "sigs.k8s.io/gateway-api/conformance@$ECHO_BASIC_VERSION")
  [ -n "$old_dir" ] && [ -f "$old_dir/echo-basic/echo-basic.go" ] \
    || die "step 'download sigs.k8s.io/gateway-api/conformance@$ECHO_BASIC_VERSION' gave no echo-basic/echo-basic.go"
  images_mod="$dir/src/conformance-images"
  rm -rf "$images_mod"
  mkdir -p "$images_mod"
  (cd "$old_dir" && find echo-basic -name '*.go' ! -name '*_test.go') | while read -r f; do
    mkdir -p "$images_mod/$(dirname "$f")"
    # Import lines only: the generated descriptor in grpcecho.pb.go holds the old path as
    # length-prefixed bytes (its go_package), which must stay as they are.
    sed 's#^\([[:space:]]*[A-Za-z_]*[[:space:]]*\)"sigs\.k8s\.io/gateway-api/conformance/echo-basic#\1"sigs.k8s.io/gateway-api-conformance-images/echo-basic#' "$old_dir/$f" > "$images_mod/$f"
  done
  printf 'module sigs.k8s.io/gateway-api-conformance-images\n\ngo 1.27.0\n' > "$images_mod/go.mod"
  (cd "$images_mod" && go mod tidy >/dev/null) || die "step 'go mod tidy (conformance images)' failed"
  images_replace="replace sigs.k8s.io/gateway-api-conformance-images => ../conformance-images"
fi

if [ "$want_suite" = 1 ] && ! suite_built; then
suite_mod="$dir/src/suite"
mkdir -p "$suite_mod"
cat > "$suite_mod/go.mod" <<EOF
module meshd.local/gateway-conformance

go 1.27.0

require (
	sigs.k8s.io/gateway-api $GATEWAY_API_VERSION
	sigs.k8s.io/gateway-api/conformance $GATEWAY_API_VERSION
)

$images_replace
EOF
cat > "$suite_mod/conformance_test.go" <<'EOF'
// Package conformance runs the upstream Gateway API conformance suite unchanged;
// every option comes from the suite's own flags.
package conformance

import (
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
)

func TestConformance(t *testing.T) {
	conformance.RunConformance(t)
}
EOF
rm -f "$suite_mod/go.sum"
(cd "$suite_mod" && go mod tidy >/dev/null) || die "step 'go mod tidy (suite)' failed"
say "go test -c sigs.k8s.io/gateway-api/conformance ($GATEWAY_API_VERSION)"
(cd "$suite_mod" && go test -c -trimpath -ldflags "-s -w" -o "$bin_dir/conformance.test.tmp" .) \
  || die "step 'go test -c (suite)' failed"
mv "$bin_dir/conformance.test.tmp" "$bin_dir/conformance.test"
fi

echo_mod="$dir/src/echo-basic"
mkdir -p "$echo_mod"
cat > "$echo_mod/go.mod" <<EOF
module meshd.local/echo-basic

go 1.27.0

require sigs.k8s.io/gateway-api-conformance-images $images_version

$images_replace
EOF
cat > "$echo_mod/tools.go" <<'EOF'
//go:build tools

// Package tools pins the echo server's package so `go mod tidy` keeps its requirements.
package tools

import _ "sigs.k8s.io/gateway-api-conformance-images/echo-basic"
EOF
rm -f "$echo_mod/go.sum"
(cd "$echo_mod" && go mod tidy >/dev/null) || die "step 'go mod tidy (echo-basic)' failed"
say "go build sigs.k8s.io/gateway-api-conformance-images/echo-basic"
(cd "$echo_mod" && go build -trimpath -ldflags "-s -w" -o "$bin_dir/echo-basic.tmp" sigs.k8s.io/gateway-api-conformance-images/echo-basic) \
  || die "step 'go build echo-basic' failed"
mv "$bin_dir/echo-basic.tmp" "$bin_dir/echo-basic"

built || die "step 'check' failed: $bin_dir/conformance.test does not list TestConformance"
say "built into $bin_dir"

# The build cache is worth nothing once the binaries exist.
if [ "${MESHD_KEEP_GO_CACHE:-}" != 1 ]; then
  go clean -cache || say "go clean -cache failed (harmless; the build cache stays)"
fi
