"""The test harness: a real local control plane, fake kubecf pods backed by real containerrun processes, a real
node, the operator as a process, and what the e2e tests, the benchmarks and the demos observe through them.

Installed into the dev venv by `make install` (tests/harness/pyproject.toml), never into the operator's wheel.
Layers, each importing only those above it in this list, never one below:

    base          state and cache paths, progress output, host processes (records, alive, marked by an
                  environment entry), kubectl, wait_until
    fakepods      fake pods on the kwok node (base)
    controlplane  etcd, kube-apiserver, kube-controller-manager, kwok (base, fakepods: `down` stops their processes)
    operator      deploy/ installed, the operator as a process (base, controlplane)
    cluster       one test's namespace, in a user's words (base, fakepods, operator)
    reliability   the fault checks shared by tests/e2e/test_faults.py and bench/soak_faults.py (cluster, ...)
    promise       the invariant checked from outside, after any step; its process source is pluggable, so the
                  real-node tier can run it against real pods (base, fakepods)
    chaos         seeded random steps and faults with the promise checked after each, and their shrinking
                  (tests/e2e/test_promise.py, bench/soak_promise.py) (cluster, operator, promise, reliability)
    realnode      kubelet + containerd + runc joined to the control plane (base, controlplane)
    images        the real node's images (base, realnode)
    workload      the real node's kubecf-like instance group (realnode)
    chart         the Helm chart next to deploy/ (base)
    testing       pytest: a missing prerequisite skips with its reason, and fails in CI; no process left (base)
    baselines     what the benchmarks compare against: the seed's nc loop and xargs+ncat (base)
"""
