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

# shellcheck source=scripts/lib/go-tool.sh
source scripts/lib/go-tool.sh
go_tool_init hubble-cli "hubble/$CILIUM_VERSION" hubble "$@"

have_build() { [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; }
have_build && exit 0

go_tool_require_go 21 "the hubble CLI"
module_dir=$(bash scripts/cilium-module.sh) || die "step 'fetch github.com/cilium/cilium' failed"
go_tool_lock have_build

src="$dir/src"
go_directive=$(awk '$1 == "go" { print $2; exit }' "$module_dir/go.mod")
go_tool_wrapper_module "$src" meshd.local/hubble-cli "$go_directive" "github.com/cilium/cilium $CILIUM_VERSION"
# The module's own replace directives (single-line form), which a dependent module must repeat.
awk '$1 == "replace" && $3 == "=>" { print }' "$module_dir/go.mod" >> "$src/go.mod"
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

go_tool_clean_cache
