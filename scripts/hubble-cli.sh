#!/usr/bin/env bash
# Builds the real `hubble` CLI from the github.com/cilium/cilium Go module (its
# hubble/ command, the same version whose protos meshd's observer API serves)
# into a cache outside the repository:
#
#   ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}/hubble/<cilium version>/bin/hubble
#
# The observe tests run it against a live agent. Idempotent: when the binary
# exists it does nothing. A cold build takes a few minutes on two cores.
#
#   scripts/hubble-cli.sh                  build (or check) the binary
#   scripts/hubble-cli.sh --print-bin      print the binary's path and exit
#
# `go install pkg@version` refuses github.com/cilium/cilium (its go.mod has a
# replace directive), so a wrapper module in the cache requires it, repeats its
# replace, and builds the command's package.
set -euo pipefail
cd "$(dirname "$0")/.."

CILIUM_VERSION=$(bash scripts/cilium-module.sh --version)

cache_root="${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
dir="$cache_root/hubble/$CILIUM_VERSION"
bin="$dir/bin/hubble"

if [ "${1:-}" = "--print-bin" ]; then
  printf '%s\n' "$bin"
  exit 0
fi

say() { printf 'hubble-cli: %s\n' "$*" >&2; }
die() { printf 'hubble-cli: error: %s\n' "$*" >&2; exit 1; }

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  exit 0
fi

command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && PATH="/usr/local/go/bin:$PATH"; } \
  || die "go not found on PATH or in /usr/local/go (needed to build the hubble CLI)"
go_minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
[ -n "$go_minor" ] && [ "$go_minor" -ge 21 ] || die "$(go env GOVERSION) is too old: Go 1.21 or later is needed"
[ "$go_minor" -ge 26 ] && export GOTOOLCHAIN=local

module_dir=$(bash scripts/cilium-module.sh) || die "step 'fetch github.com/cilium/cilium' failed"

mkdir -p "$dir/bin" "$dir/src"
exec 9>"$dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another build into $dir is running; waiting for it"; flock 9; }
  if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then exit 0; fi
fi

src="$dir/src"
go_directive=$(awk '$1 == "go" { print $2; exit }' "$module_dir/go.mod")
{
  printf 'module meshd.local/hubble-cli\n\ngo %s\n\nrequire github.com/cilium/cilium %s\n\n' "$go_directive" "$CILIUM_VERSION"
  # The module's own replace directives (single-line form), which a dependent module must repeat.
  awk '$1 == "replace" && $3 == "=>" { print }' "$module_dir/go.mod"
} > "$src/go.mod"
cat > "$src/main.go" <<'EOF'
// Command hubble is the hubble CLI of the cilium module, built unchanged.
package main

import (
	"fmt"
	"os"

	"github.com/cilium/cilium/hubble/cmd"
)

func main() {
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err.Error())
		os.Exit(1)
	}
}
EOF
rm -f "$src/go.sum"
say "building the hubble CLI of github.com/cilium/cilium@$CILIUM_VERSION into $bin"
export GOFLAGS=-mod=mod CGO_ENABLED=0
(cd "$src" && go mod tidy >/dev/null 2>&1 || true)
(cd "$src" && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .) || die "step 'go build hubble' failed"
mv "$bin.tmp" "$bin"
"$bin" version >/dev/null 2>&1 || die "step 'check' failed: $bin does not run"
say "built $bin"

# The build cache (several GB) is worth nothing once the binary exists.
if [ "${MESHD_KEEP_GO_CACHE:-}" != 1 ]; then
  go clean -cache || say "go clean -cache failed (harmless; the build cache stays)"
fi
