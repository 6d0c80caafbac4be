"""How a run talks to Weights & Biases: settings, mode, id and init arguments.

Settings follow W&B's own precedence, so nothing a W&B user already set is silently overridden:
a value set in gandist's config > the WANDB_* environment variable > gandist's default. Empty
config values and empty variables count as "not set" (see TrackingConfig).

A W&B run lives in one project (and entity and group): a resumed training run, and the `eval`
and `sefa` runs of its checkpoints, go where the run was started (its checkpoint's
trainer_state.json records the place), whatever this shell's WANDB_PROJECT says.
"""

from __future__ import annotations

import netrc
import os
import secrets
import string
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gandist.config import TrackingConfig

DEFAULT_PROJECT = "gandist"
# WANDB_MODE values wandb accepts, mapped onto the modes gandist distinguishes. `shared` is left
# out on purpose: gandist logs from the main process only.
ENV_MODES = {
    "online": "online",
    "run": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}
# The server `wandb login` writes to netrc when WANDB_BASE_URL is unset (older wandb versions,
# and the upstream of the newer default address), used when wandb's own table is unavailable.
LEGACY_API_URL = "https://api.wandb.ai"


@dataclass(frozen=True)
class WandbSettings:
    """What a run passes to wandb, every field already resolved (None: leave it to wandb)."""

    mode: str  # online | offline | disabled
    project: str
    entity: str | None
    dir: str | None  # None: the caller's default (the run directory)
    group: str | None
    tags: tuple[str, ...]
    name: str | None = None  # WANDB_NAME; None: the run directory's name
    job_type: str = "train"
    silent: bool | None = True  # None: WANDB_SILENT decides


def place_of(s: WandbSettings) -> dict[str, str]:
    """Where a W&B run lives, as trainer_state.json records it."""
    return {"project": s.project, "entity": s.entity or "", "group": s.group or ""}


def _env(env: Mapping[str, str], key: str) -> str:
    """A variable's value, with an empty or blank one counting as unset (as W&B users expect)."""
    return env.get(key, "").strip()


def resolve_settings(
    cfg: TrackingConfig,
    env: Mapping[str, str] | None = None,
    saved: Mapping[str, str] | None = None,
) -> WandbSettings:
    """Config > WANDB_* environment > gandist defaults, for each setting (pure given `env`);
    `saved`: the place (place_of) of the run being continued, which wins where it is set."""
    env = os.environ if env is None else env
    saved = saved or {}
    tags = tuple(cfg.tags) or tuple(
        t.strip() for t in _env(env, "WANDB_TAGS").split(",") if t.strip()
    )
    return WandbSettings(
        mode=resolve_mode(cfg, env),
        project=saved.get("project")
        or cfg.project
        or _env(env, "WANDB_PROJECT")
        or DEFAULT_PROJECT,
        entity=saved.get("entity") or cfg.entity or _env(env, "WANDB_ENTITY") or None,
        dir=cfg.dir or _env(env, "WANDB_DIR") or None,
        group=saved.get("group") or cfg.group or _env(env, "WANDB_RUN_GROUP") or None,
        tags=tags,
        name=_env(env, "WANDB_NAME") or None,
        job_type=cfg.job_type or _env(env, "WANDB_JOB_TYPE") or "train",
        silent=True if not _env(env, "WANDB_SILENT") else None,
    )


def moved_note(cfg: TrackingConfig, saved: Mapping[str, str] | None) -> str | None:
    """A line when this session's settings would put the run elsewhere than where it started."""
    if not saved:
        return None
    here, there = place_of(resolve_settings(cfg)), place_of(resolve_settings(cfg, saved=saved))
    if here == there:
        return None
    where = ", ".join(f"{k} {v!r}" for k, v in there.items() if v)
    now = ", ".join(f"{k} {v!r}" for k, v in here.items() if v and there[k] != v)
    return f"W&B: the run continues where it started ({where}), not in {now} as set now"


def _wandb_settings(cfg: TrackingConfig, s: WandbSettings) -> Any:
    import wandb

    # A slow or unreachable server must not stall start-up for minutes.
    extra = {} if s.silent is None else {"silent": s.silent}
    return wandb.Settings(init_timeout=cfg.init_timeout_s, **extra)


def resolve_mode(cfg: TrackingConfig, env: Mapping[str, str] | None = None) -> str:
    """online | offline | disabled. An explicit tracking.wandb wins; `auto` takes WANDB_MODE,
    else online exactly when wandb itself would find credentials, else offline (nothing leaves
    the machine). Decided without a network call."""
    env = os.environ if env is None else env
    if cfg.wandb != "auto":
        return cfg.wandb
    if raw := _env(env, "WANDB_MODE"):
        mode = ENV_MODES.get(raw.lower())
        if mode is None:
            raise ValueError(
                f"WANDB_MODE={raw!r}: gandist runs W&B as one of {', '.join(ENV_MODES)}; unset "
                "it or set tracking.wandb"
            )
        return mode
    return "online" if has_credentials(env) else "offline"


def has_credentials(env: Mapping[str, str] | None = None) -> bool:
    """Whether wandb would log in without asking: WANDB_API_KEY, WANDB_IDENTITY_TOKEN_FILE, or
    a key in the netrc file for the W&B server (what `wandb login` writes)."""
    env = os.environ if env is None else env
    if _env(env, "WANDB_API_KEY") or _env(env, "WANDB_IDENTITY_TOKEN_FILE"):
        return True
    return netrc_api_key(env) is not None


def netrc_path(env: Mapping[str, str]) -> Path:
    """The netrc file wandb reads: $NETRC, else ~/.netrc, else ~/_netrc (Windows)."""
    home = Path(env["HOME"]) if _env(env, "HOME") else Path.home()
    if explicit := _env(env, "NETRC"):
        return Path(explicit.replace("~", str(home), 1) if explicit.startswith("~") else explicit)
    unix = home / ".netrc"
    return unix if unix.exists() or not (home / "_netrc").exists() else home / "_netrc"


def _server_hosts(env: Mapping[str, str]) -> list[str]:
    """The netrc machine names wandb looks a key up under, for WANDB_BASE_URL or its default.

    Mirrors wandb.sdk.lib.wbauth.wbnetrc (the server's host[:port], then, for a CoreWeave Forge
    address, the W&B host behind it); wandb's address table is used when this wandb has one.
    """
    base = _env(env, "WANDB_BASE_URL")
    urls = [base] if base else []
    try:
        from wandb.sdk.lib import urls as wandb_urls

        urls = urls or [wandb_urls.DEFAULT_BASE_URL]
        urls.append(wandb_urls.forge_upstream_url(urls[0]))
    except (ImportError, AttributeError):
        urls = urls or [LEGACY_API_URL]
    if not base:
        urls.append(LEGACY_API_URL)
    hosts = [urlsplit(u.rstrip("/")).netloc for u in urls]
    return [h for i, h in enumerate(hosts) if h and h not in hosts[:i]]


def netrc_api_key(env: Mapping[str, str] | None = None) -> str | None:
    """The W&B key in the netrc file for this server, or None (no file, no entry, unreadable)."""
    env = os.environ if env is None else env
    path = netrc_path(env)
    try:
        entries = netrc.netrc(str(path))
    except (OSError, netrc.NetrcParseError):
        return None
    for host in _server_hosts(env):
        creds = entries.authenticators(host)
        if creds and creds[2]:
            return creds[2]
    return None


def _say(text: str) -> None:
    import sys

    print(f"gandist: {text}", file=sys.stderr, flush=True)


def drop_empty_wandb_env(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove empty WANDB_* variables; returns their names.

    wandb validates some of them as they are (an empty WANDB_MODE is not a mode, an empty
    WANDB_TAGS is one empty tag) and stops the run, while a W&B user expects an empty variable to
    mean unset. Called just before wandb starts, so its service process inherits the clean set.
    """
    environ = os.environ if environ is None else environ
    empty = [k for k, v in environ.items() if k.startswith("WANDB_") and not v.strip()]
    for key in empty:
        del environ[key]
    return empty


def new_run_id(env: Mapping[str, str] | None = None) -> str:
    """WANDB_RUN_ID when set (`wandb agent` sets it for each sweep run), else a fresh id in
    W&B's format (8 lowercase letters/digits). Kept in checkpoints to resume the run."""
    env = os.environ if env is None else env
    if given := _env(env, "WANDB_RUN_ID"):
        return given
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def init_kwargs(
    cfg: TrackingConfig,
    mode: str,
    run_id: str,
    run_dir: Path,
    name: str,
    saved: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Arguments for `wandb.init` (all but the project, which accelerate passes itself; see
    `resolve_settings(cfg, saved=saved).project`), resuming the same run id after a restart.
    gandist resumes the run itself (its id from the checkpoint), so WANDB_RESUME plays no part."""
    drop_empty_wandb_env()
    s = resolve_settings(cfg, saved=saved)
    kwargs: dict[str, Any] = {
        "mode": mode,
        "id": run_id,
        "resume": "allow",
        "dir": s.dir or str(run_dir),
        "name": s.name or name,
        "job_type": s.job_type,
        "settings": _wandb_settings(cfg, s),
    }
    if s.dir:
        Path(s.dir).mkdir(parents=True, exist_ok=True)  # wandb falls back to /tmp otherwise
    if s.entity:
        kwargs["entity"] = s.entity
    if s.group:
        kwargs["group"] = s.group
    if s.tags:
        kwargs["tags"] = list(s.tags)
    return kwargs


def log_side_run(
    cfg: TrackingConfig,
    mode: str,
    run_dir: Path,
    job_type: str,
    step: int,
    scalars: dict[str, float] | None = None,
    images: dict[str, Path] | None = None,
    config: dict[str, Any] | None = None,
    saved: Mapping[str, str] | None = None,
) -> str | None:
    """Log the results of a job on a finished run (`gandist eval`, `gandist sefa`) as its own
    W&B run of `job_type`, in the training run's project and group (`saved`: the checkpoint's
    place; a run without a group: a group named after the run directory). Returns the W&B run
    directory, or None when tracking is disabled or W&B failed: the job's results are already
    in files, so W&B never fails the command; an unreachable server falls back to offline.
    `mode` empty: the run's own tracking.wandb setting."""
    mode = mode or resolve_mode(cfg)
    if mode == "disabled":
        return None
    drop_empty_wandb_env()
    import wandb

    s = resolve_settings(cfg, saved=saved)

    def start(how: str) -> Any:
        return wandb.init(
            project=s.project,
            entity=s.entity,
            group=s.group or run_dir.name,
            job_type=job_type,
            tags=list(s.tags) or None,
            name=f"{run_dir.name}-{job_type}-step{step}",
            dir=s.dir or str(run_dir),
            mode=how,
            config=config or {},
            settings=_wandb_settings(cfg, s),
        )

    try:
        try:
            run = start(mode)
        except Exception as exc:  # noqa: BLE001 - as training: offline, never fail the job
            if mode != "online":
                raise
            _say(f"W&B online init failed ({type(exc).__name__}: {exc}); logging offline")
            wandb.teardown()
            run = start("offline")
    except Exception as exc:  # noqa: BLE001
        _say(f"W&B logging of this {job_type} failed ({type(exc).__name__}: {exc}); skipped")
        return None
    payload: dict[str, Any] = dict(scalars or {})
    payload.update({k: wandb.Image(str(v)) for k, v in (images or {}).items()})
    run.log(payload, step=step)
    out = run.dir
    run.finish()
    return str(Path(out).parent)
