"""The Helm chart next to deploy/: real helm (hack/build-helm.sh), rendering both, and comparing the objects.

Used by tests/unit/test_chart.py (template comparison, lint, schema) and tests/e2e/test_helm.py (install,
upgrade, uninstall on a local control plane); `python -m harness.chart dist` (`make dist`) builds dist/.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.base import ROOT

CHART = ROOT / "charts" / "processcontrol"
DEPLOY = ROOT / "deploy"
RELEASE = "processcontrol"
NAMESPACE = "processcontrol-system"
# The values that make the chart render deploy/namespaced/ (its example namespace is kubecf).
NAMESPACED_VALUES = ("--set", "scope=namespaced", "--set", "namespaces={kubecf}")
# Labels Helm charts add by convention and deploy/ does not have (a release, its manager, versions).
HELM_LABELS = frozenset(
    {"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}
)

Manifest = dict[str, Any]
Key = tuple[str, str, str]


@functools.cache
def helm_binary() -> Path:
    """Build helm once per version into the cache (hack/build-helm.sh) and return its path."""
    out = subprocess.run(["bash", str(ROOT / "hack" / "build-helm.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def helm_env(kubeconfig: Path | None = None) -> dict[str, str]:
    """The environment for helm: this kubeconfig, and its caches under the run's state, not the user's home."""
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    home = Path(os.environ.get("PROCESSCONTROL_STATE", "/tmp/processcontrol-cp")) / "helm-home"
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")):
        env[var] = str(home / sub)
    return env


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real helm; raise with its stderr when it fails and check is set."""
    result = subprocess.run(
        [str(helm_binary()), *args],
        capture_output=True,
        text=True,
        env=helm_env(kubeconfig),
        check=False,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def parse(text: str) -> list[Manifest]:
    """The objects of a multi-document YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def template(*values: str, release: str = RELEASE, namespace: str = NAMESPACE) -> list[Manifest]:
    """`helm template` of the chart, CRDs included, with these --set/--values arguments."""
    out = helm("template", release, str(CHART), "--namespace", namespace, "--include-crds", *values)
    return parse(out.stdout)


def kustomize(directory: Path) -> list[Manifest]:
    """`kubectl kustomize` of a deploy/ variant."""
    out = subprocess.run(["kubectl", "kustomize", str(directory)], check=True, capture_output=True, text=True)
    return parse(out.stdout)


def key(obj: Manifest) -> Key:
    """What identifies an object."""
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _strip(labels: dict[str, str] | None) -> None:
    for name in HELM_LABELS:
        if labels is not None:
            labels.pop(name, None)


def normalize(obj: Manifest) -> Manifest:
    """The object without Helm's conventional labels (in metadata, selectors and the pod template)."""
    out = copy.deepcopy(obj)
    _strip(out["metadata"].get("labels"))
    spec = out.get("spec")
    if isinstance(spec, dict):
        # A workload's selector, a NetworkPolicy's podSelector.
        for field in ("selector", "podSelector"):
            selector = spec.get(field)
            if isinstance(selector, dict):
                _strip(selector.get("matchLabels"))
        pod_meta = spec.get("template", {}).get("metadata") if isinstance(spec.get("template"), dict) else None
        if isinstance(pod_meta, dict):
            _strip(pod_meta.get("labels"))
    return out


def by_key(objects: Sequence[Manifest]) -> dict[Key, Manifest]:
    """Objects by (kind, namespace, name), normalized."""
    return {key(o): normalize(o) for o in objects}


def differences(chart: Sequence[Manifest], kustomized: Sequence[Manifest]) -> list[str]:
    """What differs between the chart's objects and deploy/'s, as readable unified diffs ([] when equal).

    deploy/ also creates the operator's Namespace; a Helm release does not own its namespace
    (`helm install -n NS --create-namespace`), so the Namespace is left out of the comparison.
    """
    ours = by_key(chart)
    theirs = {k: v for k, v in by_key(kustomized).items() if k[0] != "Namespace"}
    problems = [f"only in the chart: {k}" for k in sorted(ours.keys() - theirs.keys())]
    problems += [f"only in deploy/: {k}" for k in sorted(theirs.keys() - ours.keys())]
    for k in sorted(ours.keys() & theirs.keys()):
        if ours[k] != theirs[k]:
            diff = difflib.unified_diff(
                yaml.safe_dump(theirs[k], sort_keys=True).splitlines(),
                yaml.safe_dump(ours[k], sort_keys=True).splitlines(),
                "deploy/",
                "chart",
                lineterm="",
            )
            problems.append(f"{k} differs:\n" + "\n".join(diff))
    return problems


def build_dist(out: Path = ROOT / "dist") -> tuple[Path, Path]:
    """`make dist`: dist/install.yaml (`kubectl kustomize deploy/` as one file) and the packaged chart.

    The chart is linted first (--strict), so a broken chart is never packaged.
    """
    out.mkdir(parents=True, exist_ok=True)
    rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True).stdout
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    bundle = out / "install.yaml"
    tmp = bundle.with_suffix(".tmp")
    tmp.write_text(
        f"# processcontrol {version}: the CRD, RBAC and operator of deploy/ in one file.\n"
        "#   kubectl apply -f install.yaml\n" + rendered
    )
    tmp.replace(bundle)
    helm("lint", "--strict", str(CHART))
    for old in out.glob("processcontrol-*.tgz"):
        old.unlink()
    helm("package", str(CHART), "--destination", str(out))
    (package,) = out.glob("processcontrol-*.tgz")
    return bundle, package


def main(argv: Sequence[str]) -> int:
    """`python -m harness.chart dist`: build dist/ (see build_dist)."""
    if list(argv) != ["dist"]:
        print("usage: python -m harness.chart dist", flush=True)
        return 2
    bundle, package = build_dist()
    print(f"dist: {bundle.relative_to(ROOT)} ({len(parse(bundle.read_text()))} objects), {package.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
