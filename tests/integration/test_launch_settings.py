"""Settings a user already gave accelerate or W&B reach a real run: the precision of
`accelerate launch --mixed_precision`, and the WANDB_* variables, read back from the offline run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from tests.integration.conftest import run_gandist, train_args
from tests.wandb_reader import artifacts, history, run_info, summary

TOY = ("train.steps=2", "train.batch_size=64", "train.checkpoint_every=0")


def recorded_precision(run: Path) -> str:
    return yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"]


def test_accelerate_launch_mixed_precision_flag_is_followed(workdir: Path) -> None:
    """The default train.precision (auto) takes `accelerate launch --mixed_precision bf16`;
    `--dynamo_backend` compiles G and D (the banner says so), and the run's exports keep the
    modules' own parameter names (they carried torch.compile's "_orig_mod." prefix, which no
    resume, sample or export could load)."""
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--mixed_precision",
        "bf16",
        "--dynamo_backend",
        "eager",  # dynamo's tracing without a code generator: seconds, not minutes
        "-m",
        "gandist",
        *train_args("toy2d_gan.yaml", *TOY, "train.run_name=acc"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = workdir / "runs" / "acc"
    assert "1 process(es) on cpu, precision bf16" in proc.stdout
    assert recorded_precision(run) == "bf16"
    assert recorded_precision(run / "checkpoints" / "step_2") == "bf16"
    assert "overrides the mixed precision" not in proc.stderr
    assert "precision bf16, torch.compile (eager) |" in proc.stdout
    ck = run / "checkpoints" / "step_2"
    for name in ("generator", "discriminator"):
        with safe_open(str(ck / f"{name}.safetensors"), "pt") as f:
            keys = list(f.keys())
        assert keys and not [k for k in keys if k.startswith("_orig_mod.")], keys


def test_explicit_precision_wins_and_the_conflict_is_stated_once(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what --mixed_precision bf16 sets
    args = train_args("toy2d_gan.yaml", *TOY, "train.precision=no", "train.run_name=explicit")
    proc = run_gandist(args, workdir, nproc=2)
    assert "2 process(es) on cpu, precision no" in proc.stdout
    assert recorded_precision(workdir / "runs" / "explicit") == "no"
    assert proc.stderr.count("train.precision=no overrides the mixed precision") == 1


def test_wandb_environment_and_model_artifact_read_back(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WANDB_* fill what the config leaves unset, an empty WANDB_MODE is unset (auto without
    credentials: offline), and the finished run holds the EMA generator and the best eval/*."""
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(workdir / "no-netrc"))  # no `wandb login` either
    monkeypatch.setenv("WANDB_MODE", "")
    monkeypatch.setenv("WANDB_ENTITY", "")
    monkeypatch.setenv("WANDB_PROJECT", "envproj")
    monkeypatch.setenv("WANDB_RUN_GROUP", "envgroup")
    monkeypatch.setenv("WANDB_TAGS", "envtag1,envtag2")
    monkeypatch.setenv("WANDB_DIR", str(workdir / "wb"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(workdir / "wb-data"))  # artifact staging
    monkeypatch.setenv("WANDB_CACHE_DIR", str(workdir / "wb-cache"))
    args = train_args(
        "toy2d_gan.yaml",
        "train.steps=4",
        "train.batch_size=64",
        "train.checkpoint_every=0",
        "train.ema=true",
        "eval.every=1",
        "eval.n_samples=500",
        "tracking.wandb=auto",
        "tracking.tags=[cfgtag]",  # the config beats WANDB_TAGS
        "train.run_name=wbenv",
    )
    proc = run_gandist(args, workdir)
    assert "W&B (offline)" in proc.stdout
    files = sorted((workdir / "wb").glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1, files
    assert not (workdir / "runs" / "wbenv" / "wandb").exists()
    info = run_info(files[0])
    assert (info["project"], info["group"], info["tags"]) == ("envproj", "envgroup", ["cfgtag"])

    rows = [r for r in history(files[0]) if "eval/modes_captured" in r]
    assert [r["_step"] for r in rows] == [1, 2, 3, 4]
    best = summary(files[0])
    captured = [r["eval/modes_captured"] for r in rows]
    assert best["eval/modes_captured"] == {"max": max(captured), "last": captured[-1]}
    kl = [r["eval/reverse_kl"] for r in rows]
    assert best["eval/reverse_kl"] == {"min": min(kl), "last": kl[-1]}

    (art,) = artifacts(files[0])
    assert art["type"] == "model" and art["name"] == "wbenv-generator"
    assert "final" in art["aliases"]
    assert sorted(art["files"]) == ["config.yaml", "dataset.json", "ema_generator.safetensors"]
    meta = art["metadata"]
    assert meta["ema"] is True and meta["step"] == 4 and meta["data_info"]["kind"] == "points"
    assert meta["eval"]["step"] == 4 and meta["eval"]["modes_total"] == 8
    dataset = json.loads(Path(art["files"]["dataset.json"]).read_text())
    assert dataset["kind"] == "points" and dataset["source"] == "toy2d:ring8"
    staged_cfg = yaml.safe_load(Path(art["files"]["config.yaml"]).read_text())
    assert staged_cfg["train"]["precision"] == "no" and staged_cfg["train"]["ema"] is True
