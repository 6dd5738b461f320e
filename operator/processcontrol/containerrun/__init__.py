"""The in-container side: the `containerrun` supervisor, its socket protocol, and the `send`/`status` client."""
