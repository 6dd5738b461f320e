#!/usr/bin/env bash
# The Debian packages the tests, the benchmarks and the real-node demo need, in one place (`make deps`; every
# target that needs them runs this first, before it builds or starts anything).
#
#   hack/deps.sh GROUP...     local: the sender tools the in-pod script and containerrun are tested with (OpenBSD
#                                    nc, ncat, socat, perl, python3) and Debian's Lua 5.1 for the Argo CD check;
#                                    make unit, e2e, bench
#                             node:  the real node (kubelet's runtime and network) and its images; root only;
#                                    make e2e-node, demo-node, bench-node
#
# Nothing missing: silent, exit 0 (one dpkg-query). As root: installs what is missing with apt-get, once, its
# output kept in a log unless it fails. Not as root: exits 1 at once with the one command to run. Without dpkg-query
# (not Debian) it cannot tell and says so; the tests then name what they miss.
set -euo pipefail

declare -A GROUPS_=(
  [local]="netcat-openbsd ncat socat perl python3 lua5.1"
  # docker.io builds the images (mmdebstrap their Debian base); containerd + runc + the CNI plugins, iptables,
  # conntrack and iproute2 are the node's runtime and network (tests/harness/realnode.py).
  [node]="docker.io containerd runc containernetworking-plugins iptables conntrack iproute2 mmdebstrap"
)

(($#)) || {
  echo "usage: hack/deps.sh ${!GROUPS_[*]}..." >&2
  exit 2
}
wanted=()
for group in "$@"; do
  [[ -n ${GROUPS_[$group]-} ]] || {
    echo "deps: no group '$group' (groups: ${!GROUPS_[*]})" >&2
    exit 2
  }
  read -ra packages <<<"${GROUPS_[$group]}"
  wanted+=("${packages[@]}")
done
root=false
[[ $(id -u) == 0 ]] && root=true

# The real node's containerd, mounts, iptables and bridge need root whatever is installed: say so before any build.
if [[ " $* " == *" node "* ]] && ! $root; then
  echo "deps: the real node needs root (containerd, mounts, iptables, a bridge): run this as root, which also" \
    "installs the Debian packages it misses" >&2
  exit 1
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: no dpkg-query (not Debian?): cannot check for ${wanted[*]}; install their equivalents" >&2
  exit 0
fi

missing() {
  local installed
  # One call for all: a package dpkg does not know is named on stderr and left out of stdout.
  installed=" $(dpkg-query -W -f='${Package}=${db:Status-Status} ' "${wanted[@]}" 2>/dev/null || true) "
  local pkg
  for pkg in "${wanted[@]}"; do
    [[ $installed == *" $pkg=installed "* ]] || echo "$pkg"
  done
}

mapfile -t need < <(missing)
((${#need[@]})) || exit 0

if ! $root; then
  echo "deps: missing Debian packages ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi

log="$(mktemp -t processcontrol-deps.XXXXXX.log)"
echo "deps: installing ${need[*]} (apt-get, about a minute; log $log)" >&2
start=$SECONDS
# The lock timeout: another apt-get (or a second make) may be installing at the same moment.
if ! {
  apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${need[@]}"
} >"$log" 2>&1; then
  echo "deps: apt-get failed; the last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
mapfile -t still < <(missing)
if ((${#still[@]})); then
  echo "deps: apt-get succeeded but ${still[*]} is still not installed (see $log)" >&2
  exit 1
fi
rm -f "$log"
echo "deps: installed in $((SECONDS - start))s" >&2
