#!/usr/bin/env bash
# Build hack/kstatus (sigs.k8s.io/cli-utils kstatus as a command) into the cache, once per go.sum.
#
# Prints the path of the binary on stdout; progress goes to stderr. Idempotent: a second run finds the
# binary keyed by the hash of go.mod + go.sum + main.go and returns at once.
set -euo pipefail
# shellcheck source=hack/go-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/kstatus" && pwd)"
cache="${PROCESSCONTROL_CACHE:-$HOME/.cache/processcontrol}"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-16)"
dir="$cache/kstatus-$key"
binary="$dir/kstatus"

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

use_go build-kstatus "needed to build $binary"
echo "build-kstatus: building $binary from the Go module proxy (first run only)" >&2
mkdir -p "$dir"
tmp="$(mktemp "$dir/kstatus.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
# -trimpath and no VCS stamping: the binary depends only on the sources hashed into the key.
(cd "$here" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -mod=readonly -o "$tmp" .)
chmod 0755 "$tmp"
mv -f "$tmp" "$binary"  # atomic: a concurrent run sees either no binary or a whole one
trap - EXIT
echo "build-kstatus: done" >&2
echo "$binary"
