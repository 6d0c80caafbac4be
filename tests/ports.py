"""A free TCP port for launchers that need one named (no --standalone)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free now on 127.0.0.1, for `accelerate launch --main_process_port` and the k8s
    rehearsal's MASTER_PORT: a fixed one clashes with any other run or test session holding it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
