# shellcheck shell=bash
# Shared by the scripts that build a Go tool from the Go module proxy into the
# cache outside the repository (hubble-cli.sh, helm-cli.sh, istio-cni.sh) and
# by cilium-module.sh: where the cache is, the --print-bin option, finding a
# new enough `go`, one build at a time per cache directory, the wrapper module
# for modules `go install pkg@version` refuses, and dropping the build cache.
#
#   source "$(dirname "$0")/lib/go-tool.sh"
#   go_tool_init helm-cli "helm/$HELM_VERSION" helm "$@"   # sets $dir and $bin; --print-bin prints $bin and exits
#   have_version() { … }                                    # the tool's own "already built" check
#   have_version && exit 0
#   go_tool_require_go 21 helm                              # go on PATH (or /usr/local/go), at least go1.21
#   go_tool_lock have_version                               # waits for a concurrent build; exits 0 if it built the tool
#   …build into "$bin"…
#   go_tool_clean_cache

# The cache root every script shares: ${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}.
go_tool_cache_root() {
  printf '%s\n' "${MESHD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/meshd}"
}

# go_tool_init NAME SUBDIR BINARY [ARGS…]: say/die prefixed with NAME, $dir = <cache>/SUBDIR,
# $bin = $dir/bin/BINARY; with --print-bin among ARGS prints $bin and exits.
go_tool_init() {
  GO_TOOL_NAME=$1
  dir="$(go_tool_cache_root)/$2"
  bin="$dir/bin/$3"
  shift 3
  if [ "${1:-}" = "--print-bin" ]; then
    printf '%s\n' "$bin"
    exit 0
  fi
}

say() { printf '%s: %s\n' "$GO_TOOL_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$GO_TOOL_NAME" "$*" >&2; exit 1; }

# go_tool_require_go MIN_MINOR WHAT: `go` on PATH or in /usr/local/go, at least go1.MIN_MINOR.
# From go1.26 on the local toolchain is used as is (GOTOOLCHAIN=local): a module's newer `go`
# line would otherwise make go fetch another toolchain from the proxy.
go_tool_require_go() {
  local min=$1 what=$2 minor
  command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && PATH="/usr/local/go/bin:$PATH"; } \
    || die "go not found on PATH or in /usr/local/go (needed to build $what)"
  minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
  [ -n "$minor" ] && [ "$minor" -ge "$min" ] || die "$(go env GOVERSION) is too old: Go 1.$min or later is needed"
  if [ "$minor" -ge 26 ]; then export GOTOOLCHAIN=local; fi
}

# go_tool_lock CHECK: one build into $dir at a time; after waiting for another one,
# exits 0 when CHECK says the tool is there now. The lock lives as long as the script.
go_tool_lock() {
  mkdir -p "$dir/bin"
  exec 9>"$dir/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -n 9 || { say "another build into $dir is running; waiting for it"; flock 9; }
    if "$1"; then exit 0; fi
  fi
}

# go_tool_wrapper_module DIR NAME GO_VERSION REQUIRE…: writes DIR/go.mod of a module NAME
# (`go GO_VERSION`) requiring each "module version" pair, for modules whose own go.mod has
# replace directives (which `go install pkg@version` refuses); add their replaces after it.
go_tool_wrapper_module() {
  local wdir=$1 name=$2 goversion=$3
  shift 3
  mkdir -p "$wdir"
  {
    printf 'module %s\n\ngo %s\n' "$name" "$goversion"
    if [ $# -gt 0 ]; then printf '\nrequire %s\n' "$@"; printf '\n'; fi
  } >"$wdir/go.mod"
}

# The build cache (several GB) is worth nothing once the binary exists (MESHD_KEEP_GO_CACHE=1 keeps it).
go_tool_clean_cache() {
  if [ "${MESHD_KEEP_GO_CACHE:-}" != 1 ]; then
    go clean -cache || say "go clean -cache failed (harmless; the build cache stays)"
  fi
}
