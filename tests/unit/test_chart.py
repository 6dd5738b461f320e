"""charts/processcontrol with the real helm (built by hack/build-helm.sh): lint, the same objects as deploy/,
values checked by values.schema.json, and values reaching the operator's settings."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import chart, chart_schema
from harness.base import ROOT
from processcontrol.settings import ProcessControlSettings

Manifest = dict[str, Any]


@pytest.fixture(scope="module", autouse=True)
def helm_built() -> Path:
    """Real helm, built from the Go module proxy on first use (cached by version)."""
    return chart.helm_binary()


def one(objects: list[Manifest], kind: str) -> Manifest:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def container(objects: list[Manifest]) -> Manifest:
    deployment = one(objects, "Deployment")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    result: Manifest = operator
    return result


@pytest.mark.parametrize("values", [(), chart.NAMESPACED_VALUES], ids=["cluster", "namespaced"])
def test_helm_lint_strict_passes(values: tuple[str, ...]) -> None:
    result = chart.helm("lint", "--strict", str(chart.CHART), *values, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_default_values_render_the_objects_of_deploy() -> None:
    problems = chart.differences(chart.template(), chart.kustomize(chart.DEPLOY))
    assert problems == [], "\n".join(problems)


def test_namespaced_values_render_the_objects_of_deploy_namespaced() -> None:
    problems = chart.differences(chart.template(*chart.NAMESPACED_VALUES), chart.kustomize(chart.DEPLOY / "namespaced"))
    assert problems == [], "\n".join(problems)


def test_the_comparison_catches_a_changed_rule_in_deploy(tmp_path: Path) -> None:
    # deploy/ is the source of truth: a verb added there (say `delete` on pods) must fail the comparison.
    copy = tmp_path / "deploy"
    shutil.copytree(chart.DEPLOY, copy)
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    role = copy / "rbac" / "role.yaml"
    role.write_text(
        role.read_text().replace("verbs: [get, list, watch, patch]", "verbs: [get, list, watch, patch, delete]")
    )
    problems = chart.differences(chart.template(), chart.kustomize(copy))
    assert len(problems) == 1
    assert "('ClusterRole', '', 'processcontrol') differs" in problems[0]
    assert "- delete" in problems[0]


def test_the_chart_crd_is_the_generated_crd() -> None:
    chart_crd = chart.CHART / "crds" / "processsuspensions.yaml"
    assert chart_crd.read_text() == (ROOT / "crds" / "processsuspensions.yaml").read_text(), "run `make crds`"


def test_the_settings_schema_is_generated_from_the_model() -> None:
    assert chart_schema.main(["--check"]) == 0, "run `make chart-schema`"
    settings = yaml.safe_load((chart.CHART / "values.schema.json").read_text())["properties"]["settings"]
    assert set(settings["properties"]) == set(ProcessControlSettings.model_fields) - {"metrics_port"}


def test_settings_become_environment_the_operator_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = chart.template(
        "--set", "settings.exec_timeout_s=12", "--set", "settings.exec_concurrency=7",
        "--set-json", 'settings.exec_backoff_s=0.25', "--set", "metrics.port=9191",
        "--set-json", 'extraEnv=[{"name":"HTTPS_PROXY","value":"http://proxy:3128"}]',
    )  # fmt: skip
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env == {
        "PROCESSCONTROL_METRICS_PORT": "9191",
        "PROCESSCONTROL_LEASE_NAMESPACE": None,  # from the pod (the downward API)
        "PROCESSCONTROL_LEADER_IDENTITY": None,
        "PROCESSCONTROL_EXEC_BACKOFF_S": "0.25",
        "PROCESSCONTROL_EXEC_CONCURRENCY": "7",
        "PROCESSCONTROL_EXEC_TIMEOUT_S": "12",
        "HTTPS_PROXY": "http://proxy:3128",
    }
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    settings = ProcessControlSettings()
    assert (settings.exec_timeout_s, settings.exec_concurrency, settings.exec_backoff_s) == (12.0, 7, 0.25)
    assert settings.metrics_port == 9191
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports["metrics"] == 9191
    pod = one(objects, "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9191"


def test_every_default_setting_renders_and_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each setting at the model's own default goes through the schema, the template and back into the model.
    defaults = ProcessControlSettings()
    args: list[str] = []
    for name in chart_schema.settings_schema()["properties"]:
        args += ["--set-json", f"settings.{name}={json.dumps(getattr(defaults, name))}"]
    for entry in container(chart.template(*args))["env"]:
        monkeypatch.setenv(entry["name"], entry["value"])
    assert ProcessControlSettings() == defaults


def test_metrics_off_renders_no_port_and_port_zero() -> None:
    objects = chart.template("--set", "metrics.enabled=false")
    operator = container(objects)
    assert {"name": "PROCESSCONTROL_METRICS_PORT", "value": "0"} in operator["env"]
    assert [p["name"] for p in operator["ports"]] == ["healthz"]
    assert "prometheus.io/scrape" not in one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]


def test_metrics_service_and_service_monitor() -> None:
    objects = chart.template("--set", "metrics.service.enabled=true", "--set", "metrics.serviceMonitor.enabled=true")
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    # The Service selects exactly the operator's pod.
    assert service["spec"]["selector"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    monitor = one(objects, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [chart.NAMESPACE]}
    # The ServiceMonitor's selector must match the Service's labels.
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())


def test_image_scheduling_and_account_values() -> None:
    objects = chart.template(
        "--set", "image.repository=registry.example/pc", "--set", "image.tag=1.2.3", "--set", "image.pullPolicy=Always",
        "--set", "nodeSelector.type=kwok",
        "--set-json", 'tolerations=[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]',
        "--set-json", 'affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":'
        '{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/os","operator":"In","values":["linux"]}]}]}}}',
        "--set", "resources.limits.memory=1Gi",
        "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops",
    )  # fmt: skip
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/pc:1.2.3"
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "1Gi"}
    assert pod["nodeSelector"] == {"type": "kwok"}
    assert pod["tolerations"][0]["key"] == "kwok.x-k8s.io/node"
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    # An existing account: none created, but the grants are bound to it.
    assert pod["serviceAccountName"] == "ops"
    assert not [o for o in objects if o["kind"] == "ServiceAccount"]
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "ops"


def test_namespaced_scope_grants_each_listed_namespace_and_watches_only_those() -> None:
    objects = chart.template("--set", "scope=namespaced", "--set", "namespaces={cf-db,cf-api}")
    # Besides the leader election's Lease in the release's own namespace.
    granted = [o for o in objects if not o["metadata"]["name"].endswith("-leader-election")]
    roles = sorted(o["metadata"]["namespace"] for o in granted if o["kind"] == "Role")
    bindings = sorted(o["metadata"]["namespace"] for o in granted if o["kind"] == "RoleBinding")
    assert roles == bindings == ["cf-api", "cf-db"]
    args = container(objects)["args"]
    assert args == ["operator", "--namespace=cf-db", "--namespace=cf-api", "--liveness=http://0.0.0.0:8080/healthz"]
    cluster_roles = [o for o in objects if o["kind"] == "ClusterRole"]
    assert [c["metadata"]["name"] for c in cluster_roles] == ["processcontrol-discovery"]
    resources = {r for rule in cluster_roles[0]["rules"] for r in rule["resources"]}
    assert resources == {"namespaces", "customresourcedefinitions"}
    # The admission policies bind exactly the served namespaces.
    for binding in (o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"):
        (expression,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
        assert expression == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["cf-db", "cf-api"]}


def test_aggregated_roles_value_renders_the_objects_of_deploy_aggregated_roles() -> None:
    kustomized = chart.kustomize(chart.DEPLOY) + chart.kustomize(chart.DEPLOY / "aggregated-roles")
    problems = chart.differences(chart.template("--set", "aggregatedRoles.enabled=true"), kustomized)
    assert problems == [], "\n".join(problems)


def test_admission_policy_names_the_release_service_account() -> None:
    objects = chart.template("--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops-sa",
                             release="pc", namespace="ops")  # fmt: skip
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"}
    assert set(policies) == {
        "pc-processcontrol-pod-ledger",
        "pc-processcontrol-excluded-namespaces",
        "pc-processcontrol-requester",
    }
    for name in ("pc-processcontrol-pod-ledger", "pc-processcontrol-excluded-namespaces"):
        policy = policies[name]
        variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
        assert (variables["operatorNamespace"], variables["operatorAccount"]) == ("'ops'", "'ops-sa'")
    bindings = {o["spec"]["policyName"] for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"}
    assert bindings == set(policies)
    off = chart.template("--set", "admissionPolicy.enabled=false")
    assert not [o for o in off if o["kind"].startswith("ValidatingAdmissionPolicy")]


def requester_delegates(objects: list[Manifest]) -> list[str]:
    """The usernames the requester policy lets record someone else (a CEL list literal)."""
    (policy,) = [
        o for o in objects if o["kind"] == "ValidatingAdmissionPolicy" and "requester" in o["metadata"]["name"]
    ]
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    result: list[str] = json.loads(variables["delegates"])
    return result


def test_the_requester_policy_lists_the_delegates_of_the_values() -> None:
    assert requester_delegates(chart.template()) == []
    flux = "system:serviceaccount:flux-system:kustomize-controller"
    assert requester_delegates(chart.template("--set", f"admissionPolicy.requesterDelegates={{{flux}}}")) == [flux]


def excluded_in_policy(objects: list[Manifest]) -> list[str]:
    """The namespaces the excluded-namespaces policy refuses the operator's token in (a CEL list literal)."""
    (policy,) = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy" and "excluded" in o["metadata"]["name"]]
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    result: list[str] = json.loads(variables["excludedNamespaces"])
    return result


def test_the_excluded_namespaces_policy_follows_the_setting() -> None:
    # Unset: the operator's own default; set (even to none): exactly the setting, as the operator reads it.
    assert excluded_in_policy(chart.template()) == list(ProcessControlSettings().excluded_namespaces)
    listed = chart.template("--set", "settings.excluded_namespaces={kube-system,kube-public}")
    assert excluded_in_policy(listed) == ["kube-system", "kube-public"]
    assert excluded_in_policy(chart.template("--set-json", "settings.excluded_namespaces=[]")) == []


def test_network_policy_follows_the_metrics_values() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"team": "obs"}}, "podSelector": {"matchLabels": {"app": "prom"}}}]
    custom = one(chart.template("--set-json", f"networkPolicy.metricsFrom={json.dumps(peers)}"), "NetworkPolicy")
    assert custom["spec"]["ingress"] == [{"from": peers, "ports": [{"port": "metrics", "protocol": "TCP"}]}]
    # No metrics port: nothing may reach the pod at all (the kubelet's probes come from the node).
    assert one(chart.template("--set", "metrics.enabled=false"), "NetworkPolicy")["spec"]["ingress"] == []
    assert not [o for o in chart.template("--set", "networkPolicy.enabled=false") if o["kind"] == "NetworkPolicy"]


def test_a_list_setting_becomes_the_comma_separated_environment_the_operator_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = chart.template("--set", "settings.excluded_namespaces={kube-system,kube-public}")
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env["PROCESSCONTROL_EXCLUDED_NAMESPACES"] == "kube-system,kube-public"
    monkeypatch.setenv("PROCESSCONTROL_EXCLUDED_NAMESPACES", env["PROCESSCONTROL_EXCLUDED_NAMESPACES"])
    assert ProcessControlSettings().excluded_namespaces == ("kube-system", "kube-public")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("--set", "scope=everywhere"), "at '/scope': value must be one of 'cluster', 'namespaced'"),
        (("--set", "scope=namespaced"), "at '/namespaces': minItems: got 0, want 1"),
        (("--set", "namespaces={kubecf}"), "at '/namespaces': maxItems: got 1, want 0"),
        (("--set", "namespaces={Bad_NS}"), "'Bad_NS' does not match pattern"),
        (("--set", "settings.exec_timeout_s=0"), "at '/settings/exec_timeout_s': exclusiveMinimum"),
        (
            ("--set", "settings.exec_concurrency=5000"),
            "at '/settings/exec_concurrency': maximum: got 5,000, want 1,024",
        ),
        (("--set", "settings.exec_timout_s=3"), "additional properties 'exec_timout_s' not allowed"),
        (("--set", "settings.metrics_port=1"), "additional properties 'metrics_port' not allowed"),
        (("--set", "image.pullPolicy=Sometimes"), "at '/image/pullPolicy': value must be one of"),
        (("--set", "metrics.port=70000"), "at '/metrics/port': maximum: got 70,000, want 65,535"),
        (("--set", "metrics.serviceMonitor.enabled=true"), "at '/metrics/service/enabled': value must be true"),
        (("--set", "serviceAccount.create=false"), "at '/serviceAccount/name': minLength: got 0, want 1"),
        (("--set", "resources.limits.memory=lots"), "at '/resources/limits/memory': 'lots' does not match pattern"),
        (("--set", "replicas=0"), "at '/replicas': minimum: got 0, want 1"),
        (("--set", "settings.excluded_namespaces={Kube_System}"), "'Kube_System' does not match pattern"),
        (("--set-json", "networkPolicy.metricsFrom=[{}]"), "at '/networkPolicy/metricsFrom/0': minProperties"),
        (("--set", "admissionPolicy.enabled=maybe"), "at '/admissionPolicy/enabled': got string, want boolean"),
    ],
)
def test_bad_values_fail_with_a_message(values: tuple[str, ...], message: str) -> None:
    result = chart.helm("template", chart.RELEASE, str(chart.CHART), *values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_helm_package_contains_the_crd_and_the_schema(tmp_path: Path) -> None:
    chart.helm("package", str(chart.CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("processcontrol-*.tgz")
    names = subprocess.run(["tar", "-tzf", str(package)], check=True, capture_output=True, text=True).stdout.split()
    for wanted in ("crds/processsuspensions.yaml", "values.schema.json", "templates/deployment.yaml", "Chart.yaml"):
        assert f"processcontrol/{wanted}" in names


SERVICE_MONITOR_CRD = Path(__file__).parents[1] / "fixtures" / "crds" / "monitoring.coreos.com_servicemonitors.yaml"
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "number": (int, float),
}


def _schema_errors(value: object, schema: dict[str, Any], where: str) -> list[str]:
    """What of `value` the structural schema does not admit: unknown fields (the API server would prune them, so the
    setting would silently do nothing), wrong types, values outside an enum, missing required fields."""
    if "x-kubernetes-int-or-string" in schema:
        return [] if isinstance(value, int | str) else [f"{where}: {value!r} is no int or string"]
    kind = schema.get("type")
    if kind is not None and not isinstance(value, _TYPES[kind]):
        return [f"{where}: {value!r} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    errors: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        errors += [f"{where}.{key}: required" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if properties is not None and key in properties:
                errors += _schema_errors(item, properties[key], f"{where}.{key}")
            elif "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
                errors += _schema_errors(item, schema["additionalProperties"], f"{where}.{key}")
            elif properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{where}.{key}: no such field")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += _schema_errors(item, schema["items"], f"{where}[{index}]")
    return errors


def test_the_service_monitor_renders_against_the_real_crd() -> None:
    """The prometheus-operator CRD is not installed in any test cluster: its published schema (v0.75.2, from the Go
    module proxy) checks every field the chart renders."""
    crd = yaml.safe_load(SERVICE_MONITOR_CRD.read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    objects = chart.template("--set", "metrics.service.enabled=true", "--set", "metrics.serviceMonitor.enabled=true")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == f"{crd['spec']['group']}/v1"
    body = {key: value for key, value in monitor.items() if key not in ("apiVersion", "kind", "metadata")}
    assert _schema_errors(body, version["schema"]["openAPIV3Schema"], "ServiceMonitor") == []
    assert _schema_errors(
        {"spec": {"endpoints": [{"port": "metrics", "scrapeEvery": "5s"}]}}, version["schema"]["openAPIV3Schema"], "x"
    )
