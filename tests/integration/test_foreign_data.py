"""`gandist` on data other tools wrote: webdataset.ShardWriter shards (local and `pipe:` URLs,
no dataset.json) and a folder of grey PNGs, end to end through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import run_gandist, train_args
from tests.wds_fixtures import grey_digit_folder, write_wds

TINY = [
    "train.steps=2",
    "train.batch_size=16",
    "model.g_width=8",
    "model.d_width=8",
    "data.workers=1",
]


def mlp_on_shards(shards: Path, run: str) -> list[str]:
    """A tiny MLP GAN on the shards at their own size (data.image_size=0; an MLP takes any)."""
    return train_args(
        "gan_mlp_digits.yaml",
        f"data.source=shards:{shards}",
        "data.image_size=0",
        "model.g_hidden=[32]",
        "model.d_hidden=[32]",
        f"train.run_name={run}",
        *TINY,
    )


def _data_info(workdir: Path, run: str) -> dict:
    state = workdir / "runs" / run / "checkpoints" / "step_2" / "trainer_state.json"
    return json.loads(state.read_text())["data_info"]


def test_train_on_shardwriter_shards_local_and_piped(workdir: Path) -> None:
    shards = write_wds(workdir / "wds")  # 200 grey 16 px digits, .jpg + .cls, 4 shards
    proc = run_gandist(  # data.image_size=0: the shards' own 16 px (an MLP takes any size)
        mlp_on_shards(shards, "local"),
        workdir,
    )
    assert "indexing 4 shards once" in proc.stderr and (shards / "dataset.json").is_file()
    info = _data_info(workdir, "local")
    assert (info["channels"], info["image_size"], info["num_labels"]) == (1, 16, 10)
    # Scored on the shards alone (all a cluster user may have): the evaluator trains from them
    # where the run's hint says, and rejection sampling calibrates on them (fewer than 256).
    hint = "train one with `gandist train-evaluator shards:" + str(shards)
    assert hint in proc.stdout + proc.stderr
    out = run_gandist(["train-evaluator", f"shards:{shards}", "--epochs", "3"], workdir)
    # one pass over the stream, no sample twice: 2 workers x 6 batches of 16 = 192 of the 200
    # (each worker's last partial batch is left out), a tenth held out
    assert "held-out (19 samples)" in out.stdout
    args = ["eval", "runs/local", "--n", "64", "--rejection", "0.5", "eval.rejection_steps=3"]
    run_gandist([*args, "--wandb", "disabled"], workdir)
    (scored,) = (workdir / "runs/local/evals").glob("step_000002-domain*-drs0.5.json")
    record = json.loads(scored.read_text())
    assert record["fid"] > 0 and 0 < record["rejection_acceptance"] < 1

    # The same shards through a pipe: indexed into data.root's cache (nothing beside them
    # changes), resized and converted to the run's data.image_size / data.channels.
    (shards / "dataset.json").unlink()
    piped = f"pipe:cat {shards}/shard-{{000000..000003}}.tar"
    proc = run_gandist(
        train_args(
            "acgan_digits.yaml",
            f"data.source=shards:{piped}",
            "data.image_size=32",
            "data.channels=3",
            "train.run_name=piped",
            *TINY,
        ),
        workdir,
    )
    assert "data/shard-index/" in proc.stderr and "resized to 32x32" in proc.stderr
    assert not (shards / "dataset.json").exists()
    info = _data_info(workdir, "piped")
    assert (info["channels"], info["image_size"], info["label_type"]) == (3, 32, "class")


def test_shard_index_command(workdir: Path) -> None:
    assert "shard index" in run_gandist(["--help"], workdir).stdout
    shards = write_wds(workdir / "wds", n=40, per_shard=10)
    proc = run_gandist(["shard", "index", str(shards)], workdir)
    assert "40 samples in 4 shards: 16px jpg, 1 channel, class labels (10)" in proc.stdout
    assert json.loads((shards / "dataset.json").read_text())["indexed"] is True
    proc = run_gandist(
        ["shard", "index", f"pipe:cat {shards}/shard-000000.tar"], workdir, check=False
    )
    assert proc.returncode == 2 and "--out" in proc.stderr


def test_grey_png_folder_is_one_channel_direct_and_sharded(workdir: Path) -> None:
    grey_digit_folder(workdir / "pngs", per_class=4)
    run_gandist(
        train_args(
            "dcgan_digits.yaml",
            "data.source=folder:pngs",
            "data.image_size=32",
            "data.shards=off",
            "train.run_name=direct",
            *TINY,
        ),
        workdir,
    )
    assert _data_info(workdir, "direct")["channels"] == 1
    run_gandist(["shard", "folder:pngs", "out", "--image-size", "32"], workdir)
    assert json.loads((workdir / "out" / "dataset.json").read_text())["channels"] == 1
    run_gandist(
        train_args("dcgan_digits.yaml", "data.source=shards:out", "train.run_name=sharded", *TINY),
        workdir,
    )
    assert _data_info(workdir, "sharded")["channels"] == 1


def test_two_processes_index_once(workdir: Path) -> None:
    shards = write_wds(workdir / "wds", n=96, per_shard=24)
    proc = run_gandist(
        mlp_on_shards(shards, "two"),
        workdir,
        nproc=2,
    )
    assert proc.stderr.count("indexing 4 shards once") == 1  # one writer; the other waited
    assert "2 process(es) on cpu" in proc.stdout
    assert json.loads((shards / "dataset.json").read_text())["num_samples"] == 96
