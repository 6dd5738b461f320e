"""The commands end to end through the parser, against a fake client: output, waiting, errors and exit codes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitops.objects import SCENARIOS

from processcontrol.api import INSTANCE_GROUP_LABEL
from processcontrol.cli import main
from processcontrol.commands import run
from processcontrol.exceptions import ApiError, Forbidden, NotFound


class FakeClient:
    """Answers get_suspension from a script of objects (or exceptions); the last answer repeats."""

    def __init__(self, answers: list[Any] | None = None, served: bool = True) -> None:
        self.answers = list(answers or [])
        self.served = served
        self.calls: list[tuple[str, Any]] = []
        self.applied: dict[str, Any] | None = None
        self.fail: dict[str, Exception] = {}
        self.closed = False
        self.pods: list[dict[str, Any]] = []
        self.username = "alice"
        # What find_suspension sees before an apply: nothing, unless a test puts an object here.
        self.existing: dict[str, Any] | None = None
        self.namespaces = {"kubecf", "default"}
        self.lease: dict[str, Any] | None = None

    def _check(self, method: str) -> None:
        if method in self.fail:
            raise self.fail[method]

    async def suspensions_served(self) -> bool:
        return self.served

    async def apply_suspension(self, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        self.calls.append(("apply", dict(body)))
        self._check("apply")
        self.applied = {**body, "metadata": {**body["metadata"], "generation": 1}}
        return self.applied

    async def create_suspension(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", dict(body)))
        self._check("create")
        name = body["metadata"].get("name") or body["metadata"]["generateName"] + "x7k2p"
        return {**body, "metadata": {**body["metadata"], "name": name, "generation": 1}}

    async def get_suspension(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("get", (namespace, name)))
        self._check("get")
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        result: dict[str, Any] = answer
        return result

    async def list_suspensions(self, namespace: str | None) -> list[dict[str, Any]]:
        self.calls.append(("list", namespace))
        self._check("list")
        return [a for a in self.answers if isinstance(a, dict)]

    async def list_pods(self, namespace: str) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", namespace))
        self._check("list_pods")
        return self.pods

    async def set_suspend(self, namespace: str, name: str, suspend: bool) -> dict[str, Any]:
        self.calls.append(("set_suspend", (namespace, name, suspend)))
        self._check("set_suspend")
        return {"metadata": {"name": name, "namespace": namespace, "generation": 2}}

    async def delete_suspension(self, namespace: str, name: str) -> None:
        self.calls.append(("delete", (namespace, name)))
        self._check("delete")

    async def find_suspension(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("find", (namespace, name)))
        return self.existing

    async def whoami(self) -> str:
        self.calls.append(("whoami", None))
        self._check("whoami")
        return self.username

    async def namespace_exists(self, name: str) -> bool | None:
        self.calls.append(("namespace_exists", name))
        self._check("namespace_exists")
        return name in self.namespaces

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("get_lease", (namespace, name)))
        self._check("get_lease")
        if self.lease is None:
            raise NotFound(f"not found: lease {namespace}/{name}")
        return self.lease

    def close(self) -> None:
        self.closed = True


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(run, "_clock", fake.clock)
    monkeypatch.setattr(run, "_sleep", fake.sleep)
    return fake


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient()
    monkeypatch.setattr(run, "connect", lambda args: fake)
    return fake


def test_suspend_applies_the_validated_object(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["suspend", "database", "-n", "kubecf", "--jobs", "pxc-mysql", "--reason", "restore", "--name", "db"])
    assert code == 0
    assert client.calls == [
        ("find", ("kubecf", "db")),
        ("whoami", None),
        (
            "apply",
            {
                "apiVersion": "processcontrol.dev/v1alpha1",
                "kind": "ProcessSuspension",
                "metadata": {"name": "db", "namespace": "kubecf"},
                "spec": {
                    "instanceGroup": "database",
                    "jobs": ["pxc-mysql"],
                    "suspend": True,
                    "reason": "restore",
                    # Who the API server authenticates us as, not typed by anyone.
                    "requestedBy": {"username": "alice"},
                },
            },
        ),
    ]
    assert client.closed
    assert capsys.readouterr().out == "processsuspension.processcontrol.dev/db serverside-applied in kubecf\n"


def applied_requester(client: FakeClient) -> Any:
    assert client.applied is not None
    return client.applied["spec"].get("requestedBy")


def test_suspending_a_suspension_in_force_keeps_who_asked(client: FakeClient) -> None:
    # bob changes the reason of alice's suspension: the API server would refuse another name, and the
    # suspension is still the one alice asked for.
    client.username = "bob"
    client.existing = {"spec": {"instanceGroup": "database", "suspend": True, "requestedBy": {"username": "alice"}}}
    assert main(["suspend", "database", "-n", "kubecf", "--reason", "longer"]) == 0
    assert applied_requester(client) == {"username": "alice"}
    assert ("whoami", None) not in client.calls
    # One recorded by nobody stays unrecorded.
    client.existing = {"spec": {"instanceGroup": "database", "suspend": True}}
    assert main(["suspend", "database", "-n", "kubecf"]) == 0
    assert applied_requester(client) is None


def test_suspending_again_after_a_resume_records_the_new_requester(client: FakeClient) -> None:
    client.username = "bob"
    client.existing = {"spec": {"instanceGroup": "database", "suspend": False, "requestedBy": {"username": "alice"}}}
    assert main(["suspend", "database", "-n", "kubecf"]) == 0
    assert applied_requester(client) == {"username": "bob"}


def test_a_failed_self_subject_review_suspends_without_a_requester(
    client: FakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.fail["whoami"] = ApiError("selfsubjectreview: HTTP 404 Not Found")
    assert main(["suspend", "database", "-n", "kubecf"]) == 0
    assert applied_requester(client) is None
    assert capsys.readouterr().err == "note: the requester is not recorded: selfsubjectreview: HTTP 404 Not Found\n"


def test_dry_run_records_no_requester(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    # A manifest for Git: whoever applies it (a GitOps controller) is the requester, not who rendered it.
    assert main(["suspend", "database", "-n", "kubecf", "--dry-run"]) == 0
    assert "requestedBy" not in capsys.readouterr().out
    assert ("whoami", None) not in client.calls


def test_suspend_wait_shows_progress_then_the_summary(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [SCENARIOS["new"](), SCENARIOS["suspending"](), SCENARIOS["suspended"]()]
    code = main(["suspend", "database", "-n", "kubecf", "--name", "restore-db", "--wait"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        "[  1.0s] database-0  Suspended   3 processes stopped",
        "[  1.0s] database-1  Suspending  waiting for pxc-mysql/galera-agent, pxc-mysql/mysql",
        "[  1.0s] database-2  Suspending",
        "[  2.0s] database-1  Suspended   3 processes stopped",
        "[  2.0s] database-2  Suspended   3 processes stopped",
    ]
    assert "restore-db: 3/3 pods suspended and verified in 2.0s (Suspended)" in out
    table = out.split("(Suspended)\n", 1)[1].splitlines()
    assert table[0].split()[:3] == ["POD", "STATE", "PROCESS"]
    assert sum(line.startswith("database-") for line in table) == 3


def test_suspend_wait_fails_when_stalled(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [SCENARIOS["suspending"](), SCENARIOS["stalled.exec-forbidden"]()]
    assert main(["suspend", "database", "-n", "kubecf", "--wait"]) == 1
    assert "restore-db: stalled (ExecForbidden): pod database-0: forbidden" in capsys.readouterr().out


def test_suspend_wait_says_when_the_operator_is_not_running(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [SCENARIOS["new"]()]
    assert main(["suspend", "database", "-n", "kubecf", "--wait"]) == 1
    assert capsys.readouterr().err == "error: no status after 30s: is the operator running?\n"
    assert fake_time.now == 30.0


def test_wait_notices_a_status_stuck_at_an_older_generation(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [SCENARIOS["suspended"]()]
    assert main(["resume", "restore-db", "-n", "kubecf", "--wait"]) == 1
    assert "has not caught up with generation 2 after 30s: is the operator running?" in capsys.readouterr().err


def test_suspend_wait_times_out(client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]) -> None:
    client.answers = [SCENARIOS["suspending"]()]
    assert main(["suspend", "database", "-n", "kubecf", "--wait", "--timeout", "10s"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: timed out after 10s: Suspending: 1/3 pods suspended\n")
    assert "database-1   Suspending" in err
    assert fake_time.now == 10.0


def previewed(generation: int = 1, **preview: Any) -> dict[str, Any]:
    """A preview's object once the operator looked into its pods."""
    condition = {"type": "Previewed", "status": "True", "reason": "Previewed", "observedGeneration": generation}
    return {
        "metadata": {"name": "database-preview-x7k2p", "namespace": "kubecf", "generation": generation},
        "spec": {"instanceGroup": "database", "suspend": True, "preview": True},
        "status": {
            "observedGeneration": generation,
            "conditions": [{**condition, "message": "2 pods: would stop 1 process"}],
            "preview": {"observedGeneration": generation, "targets": 2, "looked": 2, **preview},
        },
    }


PREVIEWED_PODS = [
    {
        "name": "database-0",
        "container": "pxc-mysql-mysql",
        "stop": ["pxc-mysql/mysql"],
        "probeConflicts": ["pxc-mysql-mysql: livenessProbe exec true"],
        "message": "would stop 1",
    },
    {"name": "database-1", "container": "pxc-mysql-mysql", "reason": "NoSockets", "message": "no containerrun sockets"},
]


def test_preview_creates_a_preview_of_its_own_prints_what_it_found_and_deletes_it(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting = {"metadata": {"name": "database-preview-x7k2p"}, "status": {}}
    client.answers = [waiting, previewed(cannot=1, cannotByReason={"NoSockets": 1}, pods=PREVIEWED_PODS)]
    code = main(["suspend", "database", "-n", "kubecf", "--preview"])
    assert code == 1, "a pod stands in the way"
    [created] = [body for call, body in client.calls if call == "create"]
    # Never an apply: an existing suspension of the name must not be turned into a preview (it would let go).
    assert not [call for call, _ in client.calls if call == "apply"]
    assert created["metadata"] == {"generateName": "database-preview-", "namespace": "kubecf"}
    assert created["spec"]["preview"] is True and created["spec"]["requestedBy"] == {"username": "alice"}
    assert client.calls[-1] == ("delete", ("kubecf", "database-preview-x7k2p"))
    out = capsys.readouterr().out
    assert "database-preview-x7k2p: previewed in 1.0s: 2 pods: would stop 1 process" in out
    header, first, second = out.split("previewed in")[1].splitlines()[1:4]
    assert header.split() == ["POD", "CONTAINER", "WOULD", "STOP", "WOULD", "SKIP", "PROBLEM", "DETAIL"]
    assert first.split()[:5] == ["database-0", "pxc-mysql-mysql", "pxc-mysql/mysql", "-", "-"]
    assert second.split()[:5] == ["database-1", "pxc-mysql-mysql", "-", "-", "NoSockets"]
    assert "  database-0: pxc-mysql-mysql: livenessProbe exec true" in out
    assert out.rstrip().endswith('"database-preview-x7k2p" deleted')


def test_a_preview_with_nothing_in_the_way_exits_0_and_is_deleted_on_a_timeout_too(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [previewed(pods=PREVIEWED_PODS[:1])]
    assert main(["suspend", "database", "-n", "kubecf", "--preview"]) == 0
    client.calls.clear()
    client.answers = [{"metadata": {"name": "database-preview-x7k2p"}, "status": {"observedGeneration": 1}}]
    assert main(["suspend", "database", "-n", "kubecf", "--preview", "--timeout", "5s"]) == 1
    assert "error: timed out after 5s" in capsys.readouterr().err
    assert client.calls[-1] == ("delete", ("kubecf", "database-preview-x7k2p"))
    assert main(["suspend", "database", "-n", "kubecf", "--preview", "--dry-run"]) == 2


def test_an_interrupted_preview_is_deleted(
    client: FakeClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "_sleep", interrupt)
    client.answers = [{"metadata": {"name": "database-preview-x7k2p"}, "status": {}}]
    assert main(["suspend", "database", "-n", "kubecf", "--preview"]) == 130
    assert client.calls[-1] == ("delete", ("kubecf", "database-preview-x7k2p"))
    assert capsys.readouterr().err == "error: interrupted; the preview was deleted\n"


def test_describe_shows_a_preview_and_what_it_found(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.answers = [previewed(pods=PREVIEWED_PODS)]
    assert main(["describe", "database-preview-x7k2p", "-n", "kubecf"]) == 0
    out = capsys.readouterr().out
    assert "Preview:       true: only looks, holds nothing (set preview: false to suspend)" in out
    assert "Preview: 2 pods: would stop 1 process" in out
    assert re.search(r"^  database-1\s+pxc-mysql-mysql\s+-\s+-\s+NoSockets\s+no containerrun sockets$", out, re.M), out


def test_invalid_spec_sends_nothing(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["suspend", "database", "-n", "kubecf", "--processes=../x", "--duration", "2 hours"]) == 2
    assert client.calls == []
    err = capsys.readouterr().err
    assert err.startswith("error: invalid suspension, nothing was sent:\n")
    assert "spec.duration:" in err and "spec.processes.0:" in err


def _probed_pod(name: str, group: str) -> dict[str, Any]:
    container = {
        "name": "api-ccng",
        "args": ["containerrun", "--job-name", "api", "--process-name", "ccng", "--", "run"],
        "livenessProbe": {"httpGet": {"port": 9022, "path": "/healthz"}},
    }
    return {
        "metadata": {"name": name, "namespace": "kubecf", "uid": name, "labels": {INSTANCE_GROUP_LABEL: group}},
        "spec": {"containers": [container]},
        "status": {"phase": "Running"},
    }


def test_dry_run_notes_the_probes_it_would_make_fail(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.pods = [_probed_pod("api-0", "api"), _probed_pod("db-0", "database")]
    assert main(["suspend", "api", "-n", "kubecf", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out)["spec"] == {"instanceGroup": "api", "suspend": True}
    probe = "api-ccng: livenessProbe httpGet :9022/healthz"
    assert err == f"note: pod api-0: {probe}: fails while its process is stopped (probes: Warn)\n"
    assert main(["suspend", "api", "-n", "kubecf", "--dry-run", "--jobs", "other"]) == 0
    assert capsys.readouterr().err == ""


def test_dry_run_prints_yaml_for_git(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["suspend", "-l", "app=api", "--name", "api", "-n", "web", "--dry-run"]) == 0
    assert client.calls == [("list_pods", "web")], "a dry run only reads (the pods, for probe conflicts)"
    assert yaml.safe_load(capsys.readouterr().out) == {
        "apiVersion": "processcontrol.dev/v1alpha1",
        "kind": "ProcessSuspension",
        "metadata": {"name": "api", "namespace": "web"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "suspend": True},
    }


def test_crd_not_installed(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.fail["apply"] = NotFound("not found: processsuspension kubecf/database")
    client.served = False
    assert main(["suspend", "database", "-n", "kubecf"]) == 3
    assert capsys.readouterr().err == (
        "error: the ProcessSuspension CRD is not installed in this cluster: install it with kubectl apply -k deploy/\n"
    )


def test_not_found_when_the_crd_is_there(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.answers = [NotFound("not found: processsuspension kubecf/nope")]
    assert main(["describe", "nope", "-n", "kubecf"]) == 5
    assert capsys.readouterr().err == "error: not found: processsuspension kubecf/nope\n"


@pytest.mark.parametrize(
    ("error", "code"), [(Forbidden("forbidden: processsuspensions in kubecf: Forbidden"), 4), (ApiError("boom"), 6)]
)
def test_forbidden_and_other_errors(
    client: FakeClient, capsys: pytest.CaptureFixture[str], error: Exception, code: int
) -> None:
    client.fail["list"] = error
    assert main(["get", "-n", "kubecf"]) == code
    assert capsys.readouterr().err == f"error: {error}\n"


def test_resume_sets_suspend_false_and_waits(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [SCENARIOS["resuming"](), SCENARIOS["resumed"]()]
    assert main(["resume", "restore-db", "-n", "kubecf", "--wait"]) == 0
    assert ("set_suspend", ("kubecf", "restore-db", False)) in client.calls
    assert "restore-db: 3/3 pods resumed and verified" in capsys.readouterr().out


def test_resume_delete_waits_until_the_object_is_gone(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [SCENARIOS["resuming"](), NotFound("gone")]
    assert main(["resume", "restore-db", "-n", "kubecf", "--delete", "--wait"]) == 0
    assert client.calls[0] == ("delete", ("kubecf", "restore-db"))
    out = capsys.readouterr().out
    assert "database-1  Resuming    waiting for pxc-mysql/mysql" in out
    assert out.rstrip().endswith("restore-db: resumed and deleted in 1.0s")


def test_resume_delete_times_out_when_the_finalizer_stays(
    client: FakeClient, fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [SCENARIOS["suspended"]()]
    assert main(["resume", "restore-db", "-n", "kubecf", "--delete", "--wait", "--timeout", "5s"]) == 1
    assert "is the operator running?" in capsys.readouterr().err


def test_get_lists_and_prints_the_table(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.answers = [SCENARIOS["suspended"](), SCENARIOS["resuming"]()]
    assert main(["get", "-A"]) == 0
    assert ("list", None) in client.calls
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "SUSPEND", "READY", "PODS", "STATUS", "REQUESTER", "REASON", "AGE"]
    assert lines[1].split()[:5] == ["kubecf", "restore-db", "true", "True", "3/3"]
    assert lines[2].split()[:5] == ["kubecf", "restore-db", "false", "False", "1/3"]


def test_get_one_as_json(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.answers = [SCENARIOS["suspended"]()]
    assert main(["get", "restore-db", "-n", "kubecf", "-o", "json"]) == 0
    assert '"kind": "ProcessSuspension"' in capsys.readouterr().out


def test_get_nothing(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "-n", "kubecf"]) == 0
    assert capsys.readouterr().err == "No resources found in kubecf namespace.\n"


@pytest.mark.parametrize(
    "args",
    [
        ["describe", "database"],
        ["get", "database"],
        ["get"],
        ["resume", "database"],
        ["resume", "database", "--delete"],
        ["suspend", "database"],
    ],
)
def test_a_namespace_that_does_not_exist_says_so(
    client: FakeClient, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    missing = NotFound("not found: processsuspension nosuchns/database")
    client.answers = [missing]
    client.fail = {"apply": missing, "set_suspend": missing, "delete": missing}
    assert main([*args, "-n", "nosuchns"]) == 5
    assert capsys.readouterr().err == (
        "error: not found: namespace nosuchns does not exist (kubectl get namespaces lists them)\n"
    )


def test_a_missing_object_in_an_existing_namespace_is_named(
    client: FakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [NotFound("not found: processsuspension kubecf/nope")]
    assert main(["describe", "nope", "-n", "kubecf"]) == 5
    assert capsys.readouterr().err == "error: not found: processsuspension kubecf/nope\n"
    # Where we may not read namespaces, the object's own 404 is all there is to say.
    client.fail["namespace_exists"] = Forbidden("forbidden: namespaces")
    assert main(["describe", "nope", "-n", "nosuchns"]) == 5
    assert capsys.readouterr().err == "error: not found: processsuspension kubecf/nope\n"


def test_describe(client: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    client.answers = [SCENARIOS["stalled.no-sockets"]()]
    assert main(["describe", "restore-db", "-n", "kubecf"]) == 0
    out = capsys.readouterr().out
    assert "Stalled         True     NoSockets" in out
    assert "Operator:      <unknown> (lease processcontrol-system/processcontrol: not found" in out


def test_describe_names_the_leading_operator_replica_and_since_when(
    client: FakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    client.answers = [SCENARIOS["stalled.no-sockets"]()]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    client.lease = {
        "spec": {"holderIdentity": "processcontrol-7d9f-abcde", "acquireTime": now, "renewTime": now,
                 "leaseDurationSeconds": 15},
    }  # fmt: skip
    assert main(["describe", "restore-db", "-n", "kubecf"]) == 0
    out = capsys.readouterr().out
    assert f"Operator:      processcontrol-7d9f-abcde (since {now}," in out
    assert ("get_lease", ("processcontrol-system", "processcontrol")) in client.calls
    client.fail["get_lease"] = Forbidden("forbidden: leases")
    assert main(["describe", "restore-db", "-n", "kubecf"]) == 0
    assert "Operator:      <unknown> (lease processcontrol-system/processcontrol: forbidden" in capsys.readouterr().out


def _kubeconfig(tmp_path: Path, namespace: str | None) -> str:
    context: dict[str, Any] = {"cluster": "local", "user": "admin"}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "admin", "user": {"token": "x"}}],
        "contexts": [{"name": "ops", "context": context}, {"name": "other", "context": {"cluster": "local"}}],
        "current-context": "ops",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_namespace_comes_from_the_kube_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kubeconfig = _kubeconfig(tmp_path, "kubecf")
    args = main.__globals__["build_parser"]().parse_args(["get", "--kubeconfig", kubeconfig])
    assert run.namespace_of(args) == "kubecf"
    args.context = "other"
    assert run.namespace_of(args) == "default"
    args.namespace = "explicit"
    assert run.namespace_of(args) == "explicit"


def test_a_missing_context_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = _kubeconfig(tmp_path, None)
    assert main(["get", "--kubeconfig", kubeconfig, "--context", "nope"]) == 6
    assert "nope" in capsys.readouterr().err
