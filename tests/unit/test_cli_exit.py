"""`gandist` leaves the process group its command joined before the interpreter exits: left to
Python's teardown, a gloo rank of a 2-process `gandist eval --rejection` aborted after writing its
results (seen in CI)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch.distributed as dist

from gandist import cli


def _joins_group(tmp_path: Path, then: Exception | None):
    def command(args: argparse.Namespace) -> int:
        dist.init_process_group(
            "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
        )
        assert dist.is_initialized()
        if then is not None:
            raise then
        return 0

    return command


def test_a_finished_command_destroys_its_process_group(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(
        cli, "parse", lambda argv: argparse.Namespace(func=_joins_group(tmp_path, None))
    )
    assert cli.main([]) == 0
    assert not dist.is_initialized()


def test_a_failed_command_leaves_the_group_alone(tmp_path, monkeypatch) -> None:
    """Other ranks may still sit in a collective; destroying there could hang them."""
    monkeypatch.setattr(
        cli,
        "parse",
        lambda argv: argparse.Namespace(func=_joins_group(tmp_path, ValueError("bad input"))),
    )
    try:
        assert cli.main([]) == 2
        assert dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
