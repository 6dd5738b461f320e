#!/usr/bin/env bash
# Build the real helm (helm.sh/helm/v3 cmd/helm) from the Go module proxy into the cache, once per version:
#
#   $CACHE/helm-<v>/bin/helm
#
# CACHE is ${PROCESSCONTROL_CACHE:-$HOME/.cache/processcontrol}. Prints the binary's path on stdout; progress goes
# to stderr. Idempotent: a binary that exists and reports the expected version is not rebuilt.
set -euo pipefail
# shellcheck source=hack/go-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE=${PROCESSCONTROL_CACHE:-$HOME/.cache/processcontrol}
dir="$CACHE/helm-$HELM_VERSION"
binary="$dir/bin/helm"

if [[ -x $binary ]] && [[ $("$binary" version --template '{{.Version}}' 2>/dev/null) == "$HELM_VERSION" ]]; then
    echo "$binary"
    exit 0
fi

use_go build-helm "needed to build $binary"
start=$SECONDS
echo "build-helm: building helm $HELM_VERSION into $binary (first run only, a few minutes)" >&2
mkdir -p "$dir/src" "$dir/bin"
# A wrapper module pins the release; its go.sum comes from the proxy's checksummed go.mod of helm.
printf 'module local.invalid/processcontrol-helm-build\n\ngo 1.24\n' >"$dir/src/go.mod"
# helm's own Makefile stamps the version the same way; without it `helm version` says v3.x-dev-ish and the
# chart's kubeVersion checks see a wrong client.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
tmp="$dir/bin/helm.tmp"
(cd "$dir/src" && go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 &&
    CGO_ENABLED=0 go build -p "${GO_PARALLEL:-$(nproc)}" -trimpath -ldflags "$ldflags" -o "$tmp" helm.sh/helm/v3/cmd/helm >&2)
mv -f "$tmp" "$binary" # atomic: a concurrent reader sees no binary or a whole one
"$binary" version >&2
echo "build-helm: done in $((SECONDS - start))s" >&2
echo "$binary"
