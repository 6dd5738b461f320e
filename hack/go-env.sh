# Sourced by the build scripts: Go on PATH (Debian's golang, else /usr/local/go), never a downloaded toolchain.
# use_go WHO WHY: exit 1 with "WHO: go not found (WHY)" when there is no Go.
use_go() {
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH=/usr/local/go/bin:$PATH
  fi
  command -v go >/dev/null 2>&1 || {
    echo "$1: go not found ($2)" >&2
    exit 1
  }
  export GOTOOLCHAIN=local # never download another toolchain; the local go must be new enough
}
