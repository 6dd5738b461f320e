"""harness.simpods past one process's file limit: the endpoints are shared out over several servers, and
stopping the name stops them all. (A hard limit of 20,000 descriptors held the 20,000 sockets of 10,000 pods.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import simpods
from processcontrol.containerrun.protocol import Endpoint


def test_endpoints_past_one_servers_limit_are_served_by_several_and_stopped_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simpods, "endpoints_per_server", lambda: 2)
    state = tmp_path / "state"
    endpoints = [Endpoint(tmp_path / f"pod-{i}" / "vcap", "job", "proc") for i in range(5)]
    for endpoint in endpoints:
        endpoint.socket.parent.mkdir(parents=True)

    records = simpods.start_server("many", endpoints, state=state, timeout=60)
    try:
        assert len(records) == 3
        assert all(record.alive() for record in records)
        assert simpods.shard_names("many", state) == ["many", "many.1", "many.2"]
        assert all(e.socket.is_socket() and e.sentinel.exists() and e.pidfile.exists() for e in endpoints)
    finally:
        simpods.stop_server("many", state)

    assert not any(record.alive() for record in records)
    assert not list((state / "sim").glob("*.pid"))
    assert not any(e.socket.exists() or e.sentinel.exists() or e.pidfile.exists() for e in endpoints)
