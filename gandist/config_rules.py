"""The config's cross-field rules: what one key's type cannot express (positive sizes, DCGAN
image sizes, a penalty with a BatchNorm critic, packing vs batch, seeds...). Each failure names
the file, the key and the fix. Types and single keys are checked while building
(gandist/config.py); the per-process batch, which needs the world size, at start-up.
"""

from __future__ import annotations

import difflib

from gandist.config import DCGAN_IMAGE_SIZES, Config, _registry_names, dcgan_layout
from gandist.config import _fail as fail
from gandist.seeds import check_seed


def batch_share_fix(multiple: int, batch_size: int, world_size: int, unit: str) -> str | None:
    """None when every process's share of the global batch is a multiple of `multiple`; else
    the share and the batch sizes to pick instead (`unit` names the multiple), for the caller's
    error message."""
    per_rank, rest = divmod(batch_size, world_size)
    if rest == 0 and per_rank % multiple == 0:
        return None
    step = multiple * world_size
    lower = max(step, batch_size // step * step)
    return (
        f"train.batch_size={batch_size} over {world_size} process(es) is "
        f"{batch_size / world_size:g} per process. Set train.batch_size to a multiple of "
        f"{unit} x processes = {step} (e.g. {lower} or {lower + step})"
    )


def _validate_split(cfg: Config, origin: str) -> None:
    """The per-process batch over dist.world_size processes, known before launch: the launch
    scripts check a config with the world they will start, so a batch that does not split
    fails in a second with exit 2 (the same rules, checked in the workers at start-up, failed
    every rank, and torchrun and the cluster retried them)."""
    n, b = cfg.dist.world_size, cfg.train.batch_size
    if b % n:
        lower = max(n, b // n * n)
        raise fail(
            origin,
            "train.batch_size",
            f"{b} is the global batch and must divide evenly over dist.world_size={n} "
            f"processes: use a multiple of {n} (e.g. {lower} or {lower + n})",
        )
    rules = (
        ("model.pack", cfg.model.pack, "model.pack", cfg.model.pack > 1),
        ("loss.mode_seeking", 2, "2", cfg.loss.mode_seeking > 0),
    )
    for key, multiple, unit, on in rules:
        fix = batch_share_fix(multiple, b, n, unit) if on else None
        if fix:
            raise fail(origin, key, f"needs whole groups of {multiple} on every process: {fix}")


def validate(cfg: Config, origin: str = "<config>") -> None:
    """Cross-field rules that a single key's type cannot express."""
    m, lo, t = cfg.model, cfg.loss, cfg.train
    positive = {
        "model.z_dim": m.z_dim,
        "model.g_width": m.g_width,
        "model.d_width": m.d_width,
        "model.embed_dim": m.embed_dim,
        "train.steps": t.steps,
        "train.n_critic": t.n_critic,
        "train.batch_size": t.batch_size,
        "train.num_samples": t.num_samples,
        "train.keep_checkpoints": t.keep_checkpoints,
        "dist.stop_check_every": cfg.dist.stop_check_every,
        "tracking.init_timeout_s": cfg.tracking.init_timeout_s,
        "eval.n_samples": cfg.eval.n_samples,
        "eval.nearest_k": cfg.eval.nearest_k,
        "eval.kid_subsets": cfg.eval.kid_subsets,
        "eval.batch_size": cfg.eval.batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise fail(origin, key, f"must be > 0, got {value}")
    for key in ("sample_every", "checkpoint_every", "log_every"):
        if getattr(t, key) < 0:
            raise fail(origin, f"train.{key}", "must be >= 0 (0 disables)")
    _validate_source(cfg.data.source, origin)
    if m.kernel not in (4, 5):
        raise fail(origin, "model.kernel", f"DCGAN kernels are 4 or 5, got {m.kernel}")
    if m.arch == "dcgan" and cfg.data.image_size and not dcgan_layout(cfg.data.image_size):
        raise fail(
            origin,
            "data.image_size",
            f"model.arch=dcgan supports square sizes {', '.join(map(str, DCGAN_IMAGE_SIZES))}; "
            f"got {cfg.data.image_size} (pick one of them, or 0 for the source's default)",
        )
    if m.d_pool != "flatten" and m.arch != "dcgan":
        raise fail(
            origin,
            "model.d_pool",
            f"pools a conv critic's last feature map; model.arch={m.arch} has none "
            "(use d_pool: flatten, or arch: dcgan)",
        )
    if m.g_cond_norm:
        for blocked, why in (
            (m.arch != "dcgan", f"model.arch={m.arch} (DCGAN generators only)"),
            (m.condition == "none", "model.condition=none (an unconditional G has no label)"),
            (
                m.g_norm in ("spectral", "none"),
                f"model.g_norm={m.g_norm} (nothing to condition; use batch, instance or layer)",
            ),
        ):
            if blocked:
                raise fail(origin, "model.g_cond_norm", f"cannot be used with {why}")
    if not 0.0 <= m.dropout < 1.0:
        raise fail(origin, "model.dropout", f"must be in [0, 1), got {m.dropout}")
    if not 0.0 < t.ema_decay < 1.0:
        raise fail(origin, "train.ema_decay", f"must be in (0, 1), got {t.ema_decay}")
    if not 0.0 <= t.ema_rampup <= 1.0:
        raise fail(
            origin, "train.ema_rampup", f"must be in [0, 1] (0: no warm-up), got {t.ema_rampup}"
        )
    for net in ("g", "d"):
        o = getattr(cfg.optim, net)
        if o.lr <= 0:
            raise fail(origin, f"optim.{net}.lr", f"must be > 0, got {o.lr}")
        if len(o.betas) != 2:
            raise fail(origin, f"optim.{net}.betas", f"needs two numbers, got {o.betas}")
        if o.name == "adam" and not all(0.0 <= b < 1.0 for b in o.betas):
            raise fail(
                origin,
                f"optim.{net}.betas",
                f"Adam's betas are each in [0, 1), got {o.betas} (e.g. [0.5, 0.999])",
            )
        if o.warmup_steps < 0:
            raise fail(origin, f"optim.{net}.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
        if o.stable_steps < 0:
            raise fail(origin, f"optim.{net}.stable_steps", f"must be >= 0, got {o.stable_steps}")
        if o.stable_steps > 0 and o.schedule == "constant":
            raise fail(
                origin,
                f"optim.{net}.stable_steps",
                "holds the learning rate before a decay: set "
                f"optim.{net}.schedule to linear or cosine, or drop stable_steps",
            )
        if not 0.0 <= o.min_lr_ratio <= 1.0:
            raise fail(
                origin, f"optim.{net}.min_lr_ratio", f"must be in [0, 1], got {o.min_lr_ratio}"
            )
    _validate_techniques(cfg, origin)
    if cfg.dist.world_size > 0:
        _validate_split(cfg, origin)
    if lo.penalty in ("gp", "r1") and m.d_norm == "batch":
        raise fail(
            origin,
            "model.d_norm",
            f"loss.penalty={lo.penalty} needs a critic without BatchNorm: the penalty is a "
            "per-sample input gradient, and BatchNorm mixes samples (so it is wrong, and it "
            "differs between 1 and N processes). Use d_norm: layer, instance, spectral or none.",
        )
    if lo.penalty == "clip" and lo.clip_value <= 0:
        raise fail(origin, "loss.clip_value", f"must be > 0, got {lo.clip_value}")
    # auto is checked at start-up, against what accelerate was launched with.
    if t.dtype == "float64" and t.precision not in ("no", "auto"):
        raise fail(
            origin,
            "train.dtype",
            "float64 cannot be combined with mixed precision; set train.precision=no",
        )
    for key, seed in (("train.seed", t.seed), ("data.seed", cfg.data.seed)):
        try:
            check_seed(seed, key)
        except ValueError as exc:
            raise fail(origin, key, str(exc).split(": ", 1)[1]) from None
    if t.max_nonfinite_steps < 1:
        raise fail(origin, "train.max_nonfinite_steps", "must be >= 1")
    from gandist.models.truncation import check_truncation  # torch: loaded on use

    try:
        check_truncation(cfg.eval.truncation)
    except ValueError as exc:
        raise fail(origin, "eval.truncation", str(exc).split(": ", 1)[1]) from None
    from gandist.models.rejection import check_rejection

    try:
        check_rejection(cfg.eval.rejection)
    except ValueError as exc:
        raise fail(origin, "eval.rejection", str(exc).split(": ", 1)[1]) from None
    if cfg.eval.rejection_steps < 0:
        raise fail(origin, "eval.rejection_steps", "must be >= 0 (0: the critic as trained)")
    if cfg.dist.check_consistency_every < 0:
        raise fail(origin, "dist.check_consistency_every", "must be >= 0 (0 disables)")
    if t.resume not in ("none", "auto") and not t.resume.strip():
        raise fail(origin, "train.resume", "use none, auto, or a checkpoint directory")


def _validate_source(source: str, origin: str) -> None:
    """The source's name, checked with the config (a typo fails `gandist config`, a sweep's
    --list and a SLURM job's first second, not the training's data set-up): the registry's
    sources, a user's own registered ones included, and `shards`, which the pipeline streams."""
    known = (*_registry_names("gandist.data.sources.registry:SOURCES"), "shards")
    name = source.split(":", 1)[0].strip()
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else "; torchvision's are torchvision:<Name>"
    shown = ", ".join(sorted(known))
    raise fail(origin, "data.source", f"unknown source {name!r}{hint} (known: {shown})")


def _validate_techniques(cfg: Config, origin: str) -> None:
    """model.pack, train.augment, loss.mode_seeking (issue #14); the per-process batch is checked
    at start-up."""
    m, t = cfg.model, cfg.train
    if m.pack < 1:
        raise fail(origin, "model.pack", f"must be >= 1 (1: no packing), got {m.pack}")
    if cfg.loss.mode_seeking < 0:
        raise fail(
            origin, "loss.mode_seeking", f"must be >= 0 (0: off), got {cfg.loss.mode_seeking}"
        )
    if cfg.loss.twin_weight < 0:
        raise fail(
            origin, "loss.twin_weight", f"must be >= 0 (1: TAC-GAN), got {cfg.loss.twin_weight}"
        )
    conf = cfg.loss.aux_g_confidence
    if not 0 <= conf < 1:
        raise fail(
            origin, "loss.aux_g_confidence", f"is a probability in [0, 1) (0: off), got {conf}"
        )
    if conf > 0 and m.condition != "acgan":
        raise fail(
            origin,
            "loss.aux_g_confidence",
            "caps G's term from an ACGAN classifier; set model.condition: acgan "
            f"(got {m.condition!r}) or loss.aux_g_confidence: 0",
        )
    if m.aux_twin and m.condition != "acgan":
        raise fail(
            origin,
            "model.aux_twin",
            "the twin classifier (TAC-GAN) is a second ACGAN head; set model.condition: acgan "
            f"(got {m.condition!r}) or model.aux_twin: false",
        )
    if m.aux_project and m.condition != "acgan":
        raise fail(
            origin,
            "model.aux_project",
            "adds a projection term to an ACGAN critic; set model.condition: acgan "
            f"(got {m.condition!r}; model.condition: project is the projection critic alone) or "
            "model.aux_project: false",
        )
    if m.pack > 1:
        if m.projects_labels:
            raise fail(
                origin,
                "model.pack",
                f"model.pack={m.pack} cannot be combined with a projection critic "
                "(model.condition=project or model.aux_project: it scores one label per input, "
                "a pack holds k); use concat or acgan without aux_project, or model.pack: 1",
            )
        if t.batch_size % m.pack:
            raise fail(
                origin,
                "train.batch_size",
                f"{t.batch_size} is not a multiple of model.pack={m.pack}: every process's share "
                "of the batch must be whole packs; set train.batch_size to a multiple of "
                "model.pack x processes",
            )
    from gandist.objectives.augment import aux_policy, parse_policy  # torch: loaded on use

    try:
        policy = parse_policy(t.augment)
    except ValueError as exc:
        raise fail(origin, "train.augment", str(exc).split(": ", 1)[1]) from None
    try:
        view = aux_policy(t.augment_aux, policy)
    except ValueError as exc:
        raise fail(origin, "train.augment_aux", str(exc).split(": ", 1)[1]) from None
    if view is not None and m.condition != "acgan":
        raise fail(
            origin,
            "train.augment_aux",
            f"{t.augment_aux!r} is a view for the ACGAN classifier, but model.condition is "
            f"{m.condition!r}; set model.condition: acgan or train.augment_aux: same",
        )
