"""Usage errors name what is missing, and only that."""

from __future__ import annotations

from pathlib import Path

import pytest

from gandist.cli import parse


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["train"], "config"),
        (["config"], "config"),
        (["eval"], "path"),
        (["sweep"], "sweep"),
        (["experiments", "run"], "configs"),
        (["shard"], "source, out_dir"),
    ],
)
def test_a_missing_argument_is_named_without_the_optional_overrides(
    argv: list[str], missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """argparse's intermixed parsing listed the optional `overrides` list as required too."""
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(f"the following arguments are required: {missing}"), last


@pytest.mark.parametrize(("local_rank", "said"), [(None, True), ("0", True), ("1", False)])
def test_a_config_error_is_said_once_per_node(
    local_rank: str | None,
    said: bool,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Under torchrun every process read the same config and printed the same error (8 lines
    on an 8-GPU node); each node's local rank 0 says it, every rank exits 2."""
    from gandist import cli

    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    config = tmp_path / "c.yaml"
    config.write_text("optim:\n  d:\n    lr: abc\n")
    assert cli.main(["config", str(config)]) == 2
    err = capsys.readouterr().err
    assert ("config error" in err and "optim.d.lr" in err) == said, err


def test_a_permission_error_names_the_path_and_the_settings_to_move(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A container run as another uid could not create `data/` under its working directory:
    a bare PermissionError traceback, exit 1."""
    import argparse

    from gandist import cli

    def denied(args: argparse.Namespace) -> int:
        raise PermissionError(13, "Permission denied", "data")

    monkeypatch.setattr(cli, "parse", lambda argv: argparse.Namespace(func=denied))
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "permission denied:" in err and f"{Path.cwd() / 'data'}" in err
    assert "train.output_dir and data.root" in err
