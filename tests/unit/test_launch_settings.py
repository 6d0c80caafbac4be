"""Settings a user already gave accelerate or W&B are followed: precision from the launcher, W&B
values by W&B's precedence (gandist config > WANDB_* environment > gandist defaults)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gandist.config import Config, ConfigError, TrackingConfig, from_dict
from gandist.tracking.artifacts import EVAL_GOALS, artifact_name, dataset_json
from gandist.tracking.wandb_run import (
    drop_empty_wandb_env,
    has_credentials,
    netrc_api_key,
    new_run_id,
    resolve_mode,
    resolve_settings,
)
from gandist.training.distributed import (
    build_accelerator,
    cpu_bf16_notice,
    cpu_has_native_bf16,
    dynamo_conflict,
    engine_conflict,
    precision_conflict,
    resolve_precision,
)

KEY = "k" * 40


def netrc_file(tmp_path: Path, machine: str, key: str = KEY) -> Path:
    p = tmp_path / "netrc"
    p.write_text(f"machine {machine}\n  login user\n  password {key}\n")
    return p


# ---------------------------------------------------------------- precision


def test_precision_defaults_to_auto_and_float64_with_auto_validates() -> None:
    assert Config().train.precision == "auto"
    cfg = from_dict({"train": {"dtype": "float64"}})  # auto may still resolve to no
    assert cfg.train.precision == "auto"
    with pytest.raises(ConfigError, match="float64 cannot be combined"):
        from_dict({"train": {"dtype": "float64", "precision": "bf16"}})


@pytest.mark.parametrize(
    ("requested", "env", "expected"),
    [
        ("auto", {}, "no"),
        ("auto", {"ACCELERATE_MIXED_PRECISION": ""}, "no"),  # empty counts as unset
        ("auto", {"ACCELERATE_MIXED_PRECISION": "bf16"}, "bf16"),
        ("auto", {"ACCELERATE_MIXED_PRECISION": "BF16"}, "bf16"),
        ("no", {"ACCELERATE_MIXED_PRECISION": "bf16"}, "no"),  # explicit wins
        ("bf16", {"ACCELERATE_MIXED_PRECISION": "no"}, "bf16"),
    ],
)
def test_resolve_precision(requested: str, env: dict[str, str], expected: str) -> None:
    assert resolve_precision(requested, env) == expected


def test_precision_conflict_is_stated_only_for_a_real_disagreement() -> None:
    msg = precision_conflict("no", {"ACCELERATE_MIXED_PRECISION": "bf16"})
    assert msg is not None and "train.precision=no overrides" in msg and "bf16" in msg
    assert precision_conflict("auto", {"ACCELERATE_MIXED_PRECISION": "bf16"}) is None
    assert precision_conflict("bf16", {"ACCELERATE_MIXED_PRECISION": "bf16"}) is None
    assert precision_conflict("bf16", {}) is None
    # `accelerate launch` without --mixed_precision sets "no": not a request to report against
    assert precision_conflict("bf16", {"ACCELERATE_MIXED_PRECISION": "no"}) is None


def test_bf16_on_a_cpu_without_bf16_arithmetic_is_warned_about() -> None:
    msg = cpu_bf16_notice("bf16", on_cpu=True, native_bf16=False)
    assert msg is not None and "train.precision=no" in msg and "AVX512-BF16" in msg
    assert cpu_bf16_notice("bf16", on_cpu=True, native_bf16=True) is None
    assert cpu_bf16_notice("bf16", on_cpu=True, native_bf16=None) is None  # cannot tell: quiet
    assert cpu_bf16_notice("bf16", on_cpu=False, native_bf16=False) is None  # a GPU run
    assert cpu_bf16_notice("no", on_cpu=True, native_bf16=False) is None
    assert cpu_has_native_bf16() in (True, False, None)


def test_build_accelerator_warns_about_bf16_on_a_cpu_without_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from accelerate.state import AcceleratorState

    monkeypatch.setattr("gandist.training.distributed.cpu_has_native_bf16", lambda: False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    # accelerate keeps one process-wide state: an earlier test's Accelerator fixed its precision
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        build_accelerator(from_dict({"train": {"precision": "bf16"}}), log_with=None)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert "without bf16 arithmetic" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "launched", "match"),
    [
        ({"dtype": "float64"}, "bf16", "float64 cannot be combined"),
        ({}, "fp8", "gandist trains in no, bf16, fp16"),
        pytest.param(
            {},
            "fp16",
            "ACCELERATE_MIXED_PRECISION=fp16.*needs a CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on a GPU"),
        ),
    ],
)
def test_launched_precision_is_checked_before_the_accelerator_exists(
    monkeypatch: pytest.MonkeyPatch, overrides: dict, launched: str, match: str
) -> None:
    """The checks apply to the precision that would run, not to the literal `auto`."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launched)
    cfg = from_dict({"train": overrides})
    with pytest.raises(ValueError, match=match):
        build_accelerator(cfg, log_with=None)


# ---------------------------------------------------------------- torch.compile (dynamo)


def test_a_gradient_penalty_under_accelerates_compile_is_refused_with_the_launch_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`accelerate launch --dynamo_backend inductor` on WGAN-GP died inside torch in the first
    critic step (a compiled backward cannot be differentiated again); now it stops before the
    Accelerator exists, naming the variable, the flag and the fix."""
    env = {"ACCELERATE_DYNAMO_BACKEND": "INDUCTOR"}  # the enum value accelerate launch sets
    for penalty in ("gp", "r1"):
        text = dynamo_conflict(penalty, env)
        assert text is not None and f"loss.penalty={penalty}" in text
        assert "ACCELERATE_DYNAMO_BACKEND=inductor" in text and "--dynamo_backend no" in text
    assert dynamo_conflict("clip", env) is None  # weight clipping: no second derivative
    assert dynamo_conflict("none", env) is None
    assert dynamo_conflict("gp", {"ACCELERATE_DYNAMO_BACKEND": "NO"}) is None
    assert dynamo_conflict("gp", {}) is None
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "INDUCTOR")
    with pytest.raises(ValueError, match=r"loss.penalty=gp needs the gradient of the critic"):
        cfg = from_dict({"loss": {"penalty": "gp"}, "model": {"d_norm": "layer"}})
        build_accelerator(cfg, log_with=None)


def test_fsdp_deepspeed_and_megatron_launches_are_refused_with_the_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """accelerate would replace DDP by FSDP or DeepSpeed on a GPU (and ignore it on CPU); gandist
    stops at start-up, naming the variable and the launch flag to drop."""
    assert engine_conflict({}) is None
    assert engine_conflict({"ACCELERATE_USE_FSDP": "false"}) is None
    text = engine_conflict({"ACCELERATE_USE_FSDP": "true"})
    assert text is not None and "FSDP (ACCELERATE_USE_FSDP=true" in text
    assert "Launch without --use_fsdp" in text
    text = engine_conflict({"ACCELERATE_USE_DEEPSPEED": "True"})
    assert text is not None and "--use_deepspeed" in text
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match=r"launched with DeepSpeed"):
        build_accelerator(from_dict({}), log_with=None)


# ---------------------------------------------------------------- W&B settings


def test_defaults_without_environment(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "NETRC": str(tmp_path / "none")}
    s = resolve_settings(TrackingConfig(), env)
    assert (s.mode, s.project, s.entity, s.dir, s.group, s.tags) == (
        "offline",
        "gandist",
        None,
        None,
        None,
        (),
    )


def test_environment_fills_what_the_config_leaves_unset(tmp_path: Path) -> None:
    env = {
        "NETRC": str(tmp_path / "none"),
        "WANDB_PROJECT": "envproj",
        "WANDB_ENTITY": "envteam",
        "WANDB_DIR": "/scratch/wb",
        "WANDB_RUN_GROUP": "sweep-7",
        "WANDB_TAGS": "a, b,,c",
        "WANDB_MODE": "offline",
    }
    s = resolve_settings(TrackingConfig(), env)
    assert (s.mode, s.project, s.entity, s.dir, s.group, s.tags) == (
        "offline",
        "envproj",
        "envteam",
        "/scratch/wb",
        "sweep-7",
        ("a", "b", "c"),
    )


def test_explicit_config_beats_the_environment() -> None:
    cfg = TrackingConfig(
        wandb="disabled",
        project="p",
        entity="e",
        dir="d",
        group="g",
        tags=["t"],
    )
    env = {
        "WANDB_API_KEY": KEY,
        "WANDB_PROJECT": "envproj",
        "WANDB_ENTITY": "envteam",
        "WANDB_DIR": "/scratch/wb",
        "WANDB_RUN_GROUP": "sweep-7",
        "WANDB_TAGS": "a,b",
        "WANDB_MODE": "online",
    }
    s = resolve_settings(cfg, env)
    assert (s.mode, s.project, s.entity, s.dir, s.group, s.tags) == (
        "disabled",
        "p",
        "e",
        "d",
        "g",
        ("t",),
    )


def test_name_job_type_and_silence_follow_the_environment(tmp_path: Path) -> None:
    env = {"NETRC": str(tmp_path / "none")}
    s = resolve_settings(TrackingConfig(), env)
    assert (s.name, s.job_type, s.silent) == (None, "train", True)
    env |= {"WANDB_NAME": "n", "WANDB_JOB_TYPE": "pretrain", "WANDB_SILENT": "false"}
    s = resolve_settings(TrackingConfig(), env)
    assert (s.name, s.job_type, s.silent) == ("n", "pretrain", None)  # None: wandb reads it
    assert resolve_settings(TrackingConfig(job_type="finetune"), env).job_type == "finetune"


def test_a_resumed_run_stays_where_it_started(tmp_path: Path) -> None:
    env = {"NETRC": str(tmp_path / "none"), "WANDB_PROJECT": "now", "WANDB_RUN_GROUP": "g2"}
    saved = {"project": "first", "entity": "", "group": "g1"}
    s = resolve_settings(TrackingConfig(project="cfg"), env, saved=saved)
    assert (s.project, s.entity, s.group) == ("first", None, "g1")
    s = resolve_settings(TrackingConfig(), env, saved={"project": "first", "group": ""})
    assert (s.project, s.group) == ("first", "g2")  # a run started without a group takes one


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    names = ("PROJECT", "ENTITY", "DIR", "RUN_GROUP", "TAGS", "MODE", "API_KEY")
    env = {f"WANDB_{k}": "" for k in names} | {"NETRC": str(tmp_path / "none")}
    s = resolve_settings(TrackingConfig(), env)
    assert (s.mode, s.project, s.entity, s.group, s.tags) == ("offline", "gandist", None, None, ())


@pytest.mark.parametrize(
    ("value", "mode"),
    [("online", "online"), ("run", "online"), ("dryrun", "offline"), ("Disabled", "disabled")],
)
def test_wandb_mode_variable_when_config_says_auto(value: str, mode: str) -> None:
    assert resolve_mode(TrackingConfig(), {"WANDB_MODE": value}) == mode
    assert resolve_mode(TrackingConfig(wandb="offline"), {"WANDB_MODE": value}) == "offline"


def test_unknown_wandb_mode_names_the_variable() -> None:
    with pytest.raises(ValueError, match="WANDB_MODE='shared'"):
        resolve_mode(TrackingConfig(), {"WANDB_MODE": "shared"})


def test_auto_is_online_with_an_api_key_or_a_netrc_login(tmp_path: Path) -> None:
    none = {"NETRC": str(tmp_path / "missing"), "HOME": str(tmp_path)}
    assert resolve_mode(TrackingConfig(), none) == "offline"
    assert resolve_mode(TrackingConfig(), none | {"WANDB_API_KEY": KEY}) == "online"
    # `wandb login` against the default server (older wandb wrote api.wandb.ai)
    env = {"NETRC": str(netrc_file(tmp_path, "api.wandb.ai")), "HOME": str(tmp_path)}
    assert netrc_api_key(env) == KEY and resolve_mode(TrackingConfig(), env) == "online"
    # WANDB_MODE still wins over credentials
    assert resolve_mode(TrackingConfig(), env | {"WANDB_MODE": "offline"}) == "offline"


def test_netrc_key_must_be_for_the_configured_server(tmp_path: Path) -> None:
    path = str(netrc_file(tmp_path, "wandb.example.com:8080"))
    env = {"NETRC": path, "HOME": str(tmp_path)}
    assert not has_credentials(env)  # a key for another server is not wandb's login
    env["WANDB_BASE_URL"] = "https://wandb.example.com:8080/"
    assert has_credentials(env)
    assert resolve_mode(TrackingConfig(), env) == "online"


def test_netrc_in_home_and_broken_files(tmp_path: Path) -> None:
    (tmp_path / ".netrc").write_text(f"machine api.wandb.ai login user password {KEY}\n")
    assert has_credentials({"HOME": str(tmp_path)})
    (tmp_path / ".netrc").write_text("machine api.wandb.ai login\n")  # no key: unparsable/empty
    assert not has_credentials({"HOME": str(tmp_path)})


def test_drop_empty_wandb_env_keeps_set_and_foreign_variables() -> None:
    environ = {"WANDB_MODE": "", "WANDB_TAGS": " ", "WANDB_PROJECT": "p", "OTHER": ""}
    assert sorted(drop_empty_wandb_env(environ)) == ["WANDB_MODE", "WANDB_TAGS"]
    assert environ == {"WANDB_PROJECT": "p", "OTHER": ""}


def test_new_run_id_follows_wandb_run_id() -> None:
    assert new_run_id({"WANDB_RUN_ID": "sweeprun"}) == "sweeprun"  # set by `wandb agent`
    fresh = new_run_id({"WANDB_RUN_ID": ""})
    assert len(fresh) == 8 and fresh.isalnum() and fresh.lower() == fresh


# ---------------------------------------------------------------- model artifact


def test_dataset_json_prefers_the_run_copy_then_the_manifest(tmp_path: Path) -> None:
    state = {"data_info": {"kind": "points", "point_dim": 2}}
    assert json.loads(dataset_json(tmp_path, object(), state)) == state["data_info"]
    stream = SimpleNamespace(manifest=SimpleNamespace(to_json=lambda: '{"format": "m"}'))
    assert json.loads(dataset_json(tmp_path, stream, state)) == {"format": "m"}
    (tmp_path / "dataset.json").write_text('{"format": "run"}')
    assert json.loads(dataset_json(tmp_path, stream, state)) == {"format": "run"}


def test_artifact_names_and_goals() -> None:
    assert artifact_name("toy2d gan/2") == "toy2d-gan-2-generator"
    assert EVAL_GOALS["fid"] == "min" and EVAL_GOALS["cond_accuracy"] == "max"
