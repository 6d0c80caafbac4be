"""Usage errors name what is missing, and only that."""

from __future__ import annotations

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
