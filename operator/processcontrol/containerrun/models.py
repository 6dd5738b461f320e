"""The machine-readable rows of `processcontrol status -o json` (imported only for `-o json`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from processcontrol.containerrun.protocol import SocketState


class SocketStatus(BaseModel):
    """One containerrun socket and what it says about its process."""

    model_config = ConfigDict(frozen=True)

    job: str
    process: str
    state: SocketState
    pid: int | None
    socket: str
