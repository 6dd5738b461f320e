#!/usr/bin/env bash
# Build the local control plane binaries from the official Go modules, into a cache outside the repo:
#
#   $CACHE/k8s-<v>/bin/{kube-apiserver,kube-controller-manager}
#   $CACHE/etcd-<v>/bin/etcd
#   $CACHE/kwok-<v>-<patch>/bin/kwok  and  .../crds/*.yaml (Exec, ClusterExec CRDs); see patch_kwok
#
# CACHE is ${PROCESSCONTROL_CACHE:-$HOME/.cache/processcontrol}. Idempotent: a binary that exists and reports
# the expected version is not rebuilt. Prints each step and how long it took.
#
# k8s.io/kubernetes cannot be `go install`ed (its staging modules are required at v0.0.0 with `replace =>
# ./staging/...`), so it is built from a wrapper module whose replace lines map every staging module k8s.io/X to
# k8s.io/X v0.<minor>.<patch>, derived from that release's own go.mod.
set -euo pipefail
# shellcheck source=hack/go-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

K8S_VERSION=${K8S_VERSION:-v1.33.13}
ETCD_VERSION=${ETCD_VERSION:-v3.5.35}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
CACHE=${PROCESSCONTROL_CACHE:-$HOME/.cache/processcontrol}

use_go build-controlplane "need Go >= 1.24"
# Linking kube-apiserver takes several GB; keep parallelism to the core count.
GO_PARALLEL=${GO_PARALLEL:-$(nproc)}

TOTAL_START=$SECONDS

step_start() {
    STEP_NAME=$1
    STEP_START=$SECONDS
    echo "==> ${STEP_NAME}"
}

step_end() {
    echo "<== ${STEP_NAME}: $((SECONDS - STEP_START))s"
}

# has_version BINARY VERSION-FLAG EXPECTED: the binary exists and its version output contains EXPECTED.
has_version() {
    local bin=$1 flag=$2 expected=$3 out
    [[ -x $bin ]] || return 1
    out=$("$bin" "$flag" 2>&1) || return 1
    [[ $out == *"$expected"* ]]
}

build_kubernetes() {
    local dir="$CACHE/k8s-$K8S_VERSION" minor_patch="${K8S_VERSION#v1.}" staging_version
    staging_version="v0.${minor_patch}"
    local major=1 minor="${minor_patch%%.*}"
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

    local need=()
    for cmd in kube-apiserver kube-controller-manager; do
        if has_version "$dir/bin/$cmd" --version "Kubernetes $K8S_VERSION"; then
            echo "    $cmd $K8S_VERSION: already built ($dir/bin/$cmd)"
        else
            need+=("$cmd")
        fi
    done
    [[ ${#need[@]} -gt 0 ]] || return 0

    step_start "kubernetes $K8S_VERSION: wrapper module with staging replaces"
    mkdir -p "$dir/src" "$dir/bin"
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [[ -f $gomod ]] || { echo "build-controlplane: no go.mod for k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
    local go_line
    go_line=$(grep -m1 -E '^go [0-9.]+$' "$gomod")
    {
        echo "module local.invalid/processcontrol-k8s-build"
        echo
        echo "$go_line"
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        # Every `k8s.io/X => ./staging/src/k8s.io/X` line of the release becomes `k8s.io/X => k8s.io/X v0.<m>.<p>`.
        awk -v v="$staging_version" '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }' "$gomod"
        echo ")"
    } >"$dir/src/go.mod"
    echo "    $(grep -c '=>' "$dir/src/go.mod") staging replaces -> $staging_version"
    # Resolve the packages we build (writes go.sum).
    (cd "$dir/src" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
        "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION")
    step_end

    # One binary at a time: each link needs several GB.
    for cmd in "${need[@]}"; do
        step_start "build $cmd $K8S_VERSION"
        (cd "$dir/src" && go build -p "$GO_PARALLEL" -trimpath -ldflags "$ldflags" -o "$dir/bin/$cmd.tmp" \
            "k8s.io/kubernetes/cmd/$cmd")
        mv "$dir/bin/$cmd.tmp" "$dir/bin/$cmd"
        "$dir/bin/$cmd" --version
        step_end
    done
}

build_etcd() {
    local dir="$CACHE/etcd-$ETCD_VERSION"
    if has_version "$dir/bin/etcd" --version "etcd Version: ${ETCD_VERSION#v}"; then
        echo "    etcd $ETCD_VERSION: already built ($dir/bin/etcd)"
        return 0
    fi
    step_start "build etcd $ETCD_VERSION"
    mkdir -p "$dir/src" "$dir/bin"
    printf 'module local.invalid/processcontrol-etcd-build\n\ngo 1.24\n' >"$dir/src/go.mod"
    (cd "$dir/src" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
        go build -p "$GO_PARALLEL" -trimpath -ldflags "-s -w" -o "$dir/bin/etcd.tmp" go.etcd.io/etcd/server/v3)
    mv "$dir/bin/etcd.tmp" "$dir/bin/etcd"
    "$dir/bin/etcd" --version
    step_end
}

# kwok v0.7.0's local exec differs from a kubelet in two ways that matter to exec clients, so we build it with two
# small patches (the cache directory carries the patch level, KWOK_PATCH):
#  1. a non-zero exit of the command became an InternalError ("exit status 3" only inside the message; kubectl exits
#     1, the Python client's returncode cannot parse it); now it is the NonZeroExitCode status with the code, as the
#     kubelet sends it.
#  2. stdin was never closed after the client's stdin ended, so `kubectl exec -i POD -- cat` never finished.
KWOK_PATCH=pc1

patch_kwok() {
    local src=$1
    local exec_go="$src/pkg/kwok/server/debugging_exec.go" utils_go="$src/pkg/utils/exec/exec.go"
    grep -q 'return s.execInContainerWithTTY(ctx, cmd, in, out, resize)$' "$exec_go"
    grep -q 'return s.execInContainer(ctx, cmd, in, out, errOut)$' "$exec_go"
    grep -q '_, _ = io.Copy(inPipe, opt.In)$' "$utils_go"
    sed -i -e 's/return s.execInContainerWithTTY(ctx, cmd, in, out, resize)$/return withExitCode(s.execInContainerWithTTY(ctx, cmd, in, out, resize))/' \
        -e 's/return s.execInContainer(ctx, cmd, in, out, errOut)$/return withExitCode(s.execInContainer(ctx, cmd, in, out, errOut))/' \
        "$exec_go"
    sed -i -e 's/^\([[:space:]]*\)_, _ = io.Copy(inPipe, opt.In)$/&\n\1_ = inPipe.Close()/' "$utils_go"
    cat >"$src/pkg/kwok/server/debugging_exec_exitcode.go" <<'GO'
package server

import (
	"errors"
	osexec "os/exec"

	utilexec "k8s.io/utils/exec"
)

// withExitCode reports a command's non-zero exit the way the kubelet does (processcontrol patch):
// the streaming server turns utilexec.ExitError into a NonZeroExitCode status carrying the code.
func withExitCode(err error) error {
	var exitErr *osexec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
	}
	return err
}
GO
}

build_kwok() {
    local dir="$CACHE/kwok-$KWOK_VERSION-$KWOK_PATCH"
    if [[ -x $dir/bin/kwok ]] && [[ -f $dir/crds/kwok.x-k8s.io_execs.yaml ]] &&
        has_version "$dir/bin/kwok" --version "$KWOK_VERSION"; then
        echo "    kwok $KWOK_VERSION ($KWOK_PATCH): already built ($dir/bin/kwok)"
        return 0
    fi
    step_start "build kwok $KWOK_VERSION (patched: $KWOK_PATCH)"
    mkdir -p "$dir/bin" "$dir/crds"
    local mod
    mod=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $mod ]] || { echo "build-controlplane: sigs.k8s.io/kwok@$KWOK_VERSION not in the module cache" >&2; exit 1; }
    rm -rf "$dir/src"
    mkdir -p "$dir/src"
    cp -r "$mod" "$dir/src/kwok"
    chmod -R u+w "$dir/src/kwok"
    patch_kwok "$dir/src/kwok"
    {
        echo "module local.invalid/processcontrol-kwok-build"
        echo
        grep -m1 -E '^go [0-9.]+$' "$mod/go.mod"
        echo
        echo "require sigs.k8s.io/kwok $KWOK_VERSION"
        echo
        echo "replace sigs.k8s.io/kwok => ./kwok"
    } >"$dir/src/go.mod"
    (cd "$dir/src" && go get "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" &&
        go build -p "$GO_PARALLEL" -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
            -o "$dir/bin/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok)
    mv "$dir/bin/kwok.tmp" "$dir/bin/kwok"
    cp "$mod/kustomize/crd/bases/kwok.x-k8s.io_execs.yaml" "$mod/kustomize/crd/bases/kwok.x-k8s.io_clusterexecs.yaml" \
        "$dir/crds/"
    chmod u+w "$dir/crds/"*.yaml
    "$dir/bin/kwok" --version
    step_end
}

echo "build-controlplane: cache $CACHE ($(go version))"
build_kubernetes
build_etcd
build_kwok
echo "build-controlplane: done in $((SECONDS - TOTAL_START))s"
