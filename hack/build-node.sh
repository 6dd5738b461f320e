#!/usr/bin/env bash
# Build the real node's binaries (harness.realnode) into the same cache as hack/build-controlplane.sh:
#
#   $CACHE/k8s-<v>/bin/{kubelet,kube-proxy,kube-scheduler}   same k8s.io/kubernetes wrapper module and version
#   $CACHE/pause-<hash>/pause                                  the pod sandbox's static pause binary
#
# Idempotent: a binary that exists and reports the expected version (the pause binary: its source hash) is not
# rebuilt. Runs build-controlplane.sh first: it writes the wrapper module, and its Go build cache makes these
# builds short (about a minute each instead of minutes). Never run two builds of the same cache at once.
set -euo pipefail
# shellcheck source=hack/go-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

HERE=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=${K8S_VERSION:-v1.33.13}
CACHE=${PROCESSCONTROL_CACHE:-$HOME/.cache/processcontrol}

use_go build-node "needed to build the node's binaries"
GO_PARALLEL=${GO_PARALLEL:-$(nproc)}

bash "$HERE/build-controlplane.sh"

TOTAL_START=$SECONDS
K8S_DIR="$CACHE/k8s-$K8S_VERSION"
minor_patch="${K8S_VERSION#v1.}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor_patch%%.*}"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

need=()
for cmd in kubelet kube-proxy kube-scheduler; do
    out=$("$K8S_DIR/bin/$cmd" --version 2>&1) || out=""
    if [[ $out == *"Kubernetes $K8S_VERSION"* ]]; then
        echo "    $cmd $K8S_VERSION: already built ($K8S_DIR/bin/$cmd)"
    else
        need+=("$cmd")
    fi
done
if ((${#need[@]})); then
    # Our own copy of the wrapper module (build-controlplane.sh owns src/): `go get` below edits go.mod and go.sum.
    src="$K8S_DIR/node-src"
    mkdir -p "$src"
    cp "$K8S_DIR/src/go.mod" "$K8S_DIR/src/go.sum" "$src/"
    (cd "$src" && go get $(printf "k8s.io/kubernetes/cmd/%s@$K8S_VERSION " "${need[@]}"))
    for cmd in "${need[@]}"; do
        start=$SECONDS
        echo "==> build $cmd $K8S_VERSION"
        (cd "$src" && go build -p "$GO_PARALLEL" -trimpath -ldflags "$ldflags" -o "$K8S_DIR/bin/$cmd.tmp" \
            "k8s.io/kubernetes/cmd/$cmd")
        mv "$K8S_DIR/bin/$cmd.tmp" "$K8S_DIR/bin/$cmd"
        echo "<== build $cmd $K8S_VERSION: $((SECONDS - start))s"
    done
fi

# The sandbox ("pause") process: sleeps until SIGINT/SIGTERM and reaps the zombies of the pod's shared pid namespace.
# Static (no cgo), so its image needs no libc.
PAUSE_GO='package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
'
pause_hash=$(printf '%s' "$PAUSE_GO" | sha256sum | cut -c1-12)
pause_dir="$CACHE/pause-$pause_hash"
if [[ -x $pause_dir/pause ]]; then
    echo "    pause ($pause_hash): already built ($pause_dir/pause)"
else
    echo "==> build pause ($pause_hash)"
    mkdir -p "$pause_dir/src"
    printf '%s' "$PAUSE_GO" >"$pause_dir/src/main.go"
    printf 'module local.invalid/processcontrol-pause\n\ngo 1.24\n' >"$pause_dir/src/go.mod"
    (cd "$pause_dir/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$pause_dir/pause.tmp" .)
    mv "$pause_dir/pause.tmp" "$pause_dir/pause"
fi
ln -sfn "$pause_dir" "$CACHE/pause-current"
echo "build-node: done in $((SECONDS - TOTAL_START))s"
