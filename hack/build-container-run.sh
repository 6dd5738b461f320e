#!/usr/bin/env bash
# Build the Go original `container-run` (code.cloudfoundry.org/quarks-container-run v0.0.3) into the cache, so that
# the containerrun tests, the e2e and the bench can run it side by side with ours.
#
#   hack/build-container-run.sh [--optional]
#
# The source is ../shared/third_party/quarks-container-run-v0.0.3 next to the repository (GO_CONTAINER_RUN_SRC
# overrides it; see below for clones of local clones): the Go module proxy does not serve this module, so it comes as a source tree. It is copied to a
# temporary directory first (shared/ is read-only in CI) and built with `go build ./cmd`; its dependencies (logrus,
# cobra, pflag, x/sys, x/crypto) come from the Go module proxy.
#
# Prints the path of the binary on stdout; progress goes to stderr. Idempotent: the binary is kept under
# ${PROCESSCONTROL_CACHE:-~/.cache/processcontrol}/container-run-v0.0.3-<hash of the source tree>/ and a second
# run returns at once. Without the source it exits 3 (with --optional: 0, printing nothing), so the tests skip the
# Go parametrizations with that reason (and fail in CI). Run the binary with hack/container-run-vcap: it hard-codes
# /var/vcap.
set -euo pipefail
# shellcheck source=hack/go-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tree=shared/third_party/quarks-container-run-v0.0.3
src="${GO_CONTAINER_RUN_SRC:-$repo/../$tree}"
# A clone of a local clone (`git clone . /tmp/x`, as the CI check before a hand-over does) has no ../shared of its
# own: then the one next to the repository it was cloned from.
if [[ -z ${GO_CONTAINER_RUN_SRC-} && ! -f $src/go.mod ]]; then
  origin="$(git -C "$repo" remote get-url origin 2>/dev/null || true)"
  if [[ -n $origin && -d $origin && -f $origin/../$tree/go.mod ]]; then
    src="$origin/../$tree"
  fi
fi
cache="${PROCESSCONTROL_CACHE:-$HOME/.cache/processcontrol}"

if [[ ! -f $src/go.mod ]]; then
  echo "build-container-run: no Go container-run source at $src (../shared is absent)" >&2
  [[ ${1-} == --optional ]] && exit 0
  exit 3
fi
src="$(cd "$src" && pwd)"

# The key is the content of every file of the source tree (names and bytes), so a changed source is rebuilt.
key="$(cd "$src" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
dir="$cache/container-run-v0.0.3-$key"
binary="$dir/container-run"

if [[ -x $binary ]]; then
  echo "$binary"
  exit 0
fi

use_go build-container-run "needed to build $binary"
echo "build-container-run: building $binary from $src (first run only)" >&2
start=$SECONDS
mkdir -p "$dir"
work="$(mktemp -d)"
tmp="$(mktemp "$dir/container-run.XXXXXX")"
trap 'rm -rf "$work" "$tmp"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"
# -trimpath and no VCS stamping: the binary depends only on the sources hashed into the key (and go.sum's modules).
(cd "$work" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -mod=readonly -o "$tmp" ./cmd)
chmod 0755 "$tmp"
mv -f "$tmp" "$binary" # atomic: a concurrent run sees either no binary or a whole one
echo "build-container-run: done in $((SECONDS - start))s" >&2
echo "$binary"
