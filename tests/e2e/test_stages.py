"""Ordered stages (issue 25 item 3) on the real control plane: galera-agent before mysql, across three pods and in
a pod created during the suspension; resumed in reverse. The order is read from containerrun's own log (each line
carries its time), not from the operator."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

from e2e.test_fenced import frozen
from harness import fakepods
from harness.base import wait_until
from harness.cluster import Cluster, slow_shell

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
STAGES = [{"processes": ["galera-agent"]}, {"processes": ["mysql"]}]
# containerrun's log line: `2026-12-02 05:50:34,123 containerrun[job/process] INFO received STOP`.
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) containerrun\[[^]]+\] \w+ received (STOP|START)\b")


def received(cluster: Cluster, pod: str, job_process: str, command: str) -> list[datetime]:
    """When the process's containerrun read each datagram of this command, by its own clock."""
    log = fakepods.container_log(cluster.namespace, pod, fakepods.JobProcess.parse(job_process))
    times = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        match = LINE.match(line)
        if match and match.group(2) == command:
            times.append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"))
    return times


def first(cluster: Cluster, pods: list[str], job_process: str, command: str) -> dict[str, datetime]:
    """Per pod, when the process first received the command (every pod must have)."""
    found = {pod: received(cluster, pod, job_process, command) for pod in pods}
    missing = [pod for pod, times in found.items() if not times]
    assert not missing, f"no {command} for {job_process} in {missing}"
    return {pod: times[0] for pod, times in found.items()}


def stage(cluster: Cluster, name: str) -> dict[str, object]:
    found: dict[str, object] = cluster.get("psus", name).get("status", {}).get("stage", {})
    return found


def test_stages_stop_in_order_across_pods_and_in_a_new_pod_and_resume_in_reverse(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=3)
    cluster.apply(cluster.suspension("restore", instanceGroup="database", stages=STAGES))
    cluster.wait("restore")
    assert not any(cluster.all_states(pods, BOTH).values())
    assert stage(cluster, "restore") == {"index": 2, "of": 2, "phase": "Stopped", "summary": "2/2 Stopped"}

    # Stage 2 (mysql) was stopped in no pod before stage 1 (galera-agent) was stopped in every pod: every agent
    # was verified stopped before the first mysql got its STOP, and the agents exited before then.
    agents = first(cluster, pods, AGENT, "STOP")
    mysqls = first(cluster, pods, MYSQL, "STOP")
    assert max(agents.values()) < min(mysqls.values()), f"agents stopped at {agents}, mysql at {mysqls}"
    wide = cluster.kubectl("get", "psus", "restore", "-o", "wide").stdout.splitlines()
    assert "STAGE" in wide[0].split() and "2/2 Stopped" in wide[1]

    # A pod created during the suspension follows the same order on its own; the others keep what they hold.
    stops_before = {pod: len(received(cluster, pod, MYSQL, "STOP")) for pod in pods}
    new = fakepods.create_pod("database", cluster.namespace, 3, BOTH)
    fakepods.wait_for_sockets(cluster.namespace, new, fakepods.parse_jobs(BOTH))
    fakepods.wait_ready(cluster.namespace, [new])
    wait_until(lambda: not cluster.running(new, MYSQL) and not cluster.running(new, AGENT), 60, "the new pod stopped")
    wait_until(lambda: cluster.get("psus", "restore")["status"].get("summary") == "4/4", 60, "4/4 suspended")
    (new_agent,) = received(cluster, new, AGENT, "STOP")
    (new_mysql,) = received(cluster, new, MYSQL, "STOP")
    assert new_agent < new_mysql, f"in the new pod: galera-agent STOP at {new_agent}, mysql at {new_mysql}"
    assert {pod: len(received(cluster, pod, MYSQL, "STOP")) for pod in pods} == stops_before
    assert not any(cluster.all_states(pods, BOTH).values()), "no pod gave anything back for the new one"
    all_pods = [*pods, new]

    # Resume: mysql first, in every pod, verified running before any galera-agent gets its START. One pod's
    # mysql is slow to come back (its containerrun frozen, well within the verification timeout): no galera-agent
    # starts anywhere until it runs.
    slow, *others = all_pods
    with frozen(cluster, slow, MYSQL):
        cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":false}}')
        wait_until(lambda: all(cluster.running(pod, MYSQL) for pod in others), 60, "mysql running in the others")
        time.sleep(4)
        assert not any(cluster.running(pod, AGENT) for pod in all_pods), "a galera-agent started before every mysql"
        assert received(cluster, slow, MYSQL, "START") == [], "the frozen containerrun read nothing"
        assert stage(cluster, "restore")["summary"] == "2/2 Starting"
    cluster.wait("restore", timeout=90)
    assert cluster.condition("restore", "Ready")["reason"] == "Resumed"
    assert all(cluster.all_states(all_pods, BOTH).values())
    mysql_starts = first(cluster, all_pods, MYSQL, "START")
    agent_starts = first(cluster, all_pods, AGENT, "START")
    assert max(mysql_starts.values()) < min(agent_starts.values()), (
        f"mysql started at {mysql_starts}, galera-agent at {agent_starts}"
    )
    assert stage(cluster, "restore") == {"index": 1, "of": 2, "phase": "Started", "summary": "1/2 Started"}
    wait_until(lambda: all(cluster.ledger(pod) == {} for pod in all_pods), 30, "every ledger empty")


def test_deleting_a_staged_suspension_resumes_in_reverse_before_it_goes(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database", stages=STAGES))
    cluster.wait("restore")
    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    assert all(cluster.all_states(pods, BOTH).values())
    mysql_starts = first(cluster, pods, MYSQL, "START")
    agent_starts = first(cluster, pods, AGENT, "START")
    assert max(mysql_starts.values()) < min(agent_starts.values()), (
        f"mysql started at {mysql_starts}, galera-agent at {agent_starts}"
    )
    assert all(cluster.ledger(pod) == {} for pod in pods)


def test_an_operator_restarted_during_a_resume_starts_no_stage_before_a_silent_pod_has_the_later_one(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The operator restarts while mysql runs again in two pods and one pod still holds it. That pod's execs hang
    (its exec outlasts its timeout), so the new operator hears nothing from it for a while: the two others still
    start no galera-agent, since its ledger says it holds both stages. Only once it fails (its exec timed out)
    do they go on; it follows in its own order when its execs work again."""
    pods = cluster.group("database", pods=3)
    cluster.apply(cluster.suspension("restore", instanceGroup="database", stages=STAGES))
    cluster.wait("restore")
    slow, *others = pods
    cluster.restrict_exec_path(slow, slow_shell(tmp_path / "slow", 60))
    cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_until(lambda: all(cluster.running(pod, MYSQL) for pod in others), 60, "mysql running in the others")
    assert not any(cluster.running(pod, AGENT) for pod in pods), "a galera-agent started before every mysql"
    cluster.operator.stop()
    cluster.operator.start()
    cluster.operator.wait_leading()
    time.sleep(5)  # the restarted operator's workers have looked at their pods; the slow pod's exec still hangs
    assert not any(cluster.running(pod, AGENT) for pod in pods), "a galera-agent started while a pod held mysql"
    assert not cluster.running(slow, MYSQL)

    cluster.restrict_exec_path(slow, None)
    cluster.wait("restore", timeout=120)
    assert cluster.condition("restore", "Ready")["reason"] == "Resumed"
    assert all(cluster.all_states(pods, BOTH).values())
    (slow_mysql, *_), (slow_agent, *_) = (
        received(cluster, slow, MYSQL, "START"),
        received(cluster, slow, AGENT, "START"),
    )
    assert slow_mysql < slow_agent, f"in the slow pod: mysql START at {slow_mysql}, galera-agent at {slow_agent}"
    wait_until(lambda: all(cluster.ledger(pod) == {} for pod in pods), 30, "every ledger empty")
