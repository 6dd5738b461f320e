"""The argocd-cm snippet, generated from deploy/argocd/health.lua; running this file rewrites it."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"
CM_PATCH = REPO / "deploy" / "argocd" / "argocd-cm-patch.yaml"
CM_KEY = "resource.customizations.health.processcontrol.dev_ProcessSuspension"


def render_cm_patch(script: str) -> str:
    """The ConfigMap patch that carries the script, indented as a YAML block scalar."""
    body = "".join(f"    {line}".rstrip() + "\n" for line in script.splitlines())
    return (
        "# Argo CD health check for ProcessSuspension: merge into the argocd-cm ConfigMap, e.g.\n"
        "#   kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm-patch.yaml\n"
        "# Generated from deploy/argocd/health.lua by `python tests/unit/gitops/argocd_cm.py`: edit that file.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n"
        f"  {CM_KEY}: |\n"
        f"{body}"
    )


if __name__ == "__main__":
    CM_PATCH.write_text(render_cm_patch(HEALTH_LUA.read_text()))
    print(f"wrote {CM_PATCH.relative_to(REPO)}", file=sys.stderr)
