"""Typed run configuration: YAML -> dataclasses, dotted overrides, validation with suggestions.

Every section is a dataclass so the trainer never reads raw dicts. Validation happens once, at
load (types here, rules across keys in config_rules.py), and every error names the file and the
dotted key so a typo never reaches a 2-hour job.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and key."""


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"choices": choices})


def _registered(default: str, registry: str) -> Any:
    """A key whose valid values are the names in a registry ("module:ATTRIBUTE"), so that
    registering a new model, loss or penalty is all it takes to make it configurable."""
    return field(default=default, metadata={"registry": registry})


def _registry_names(where: str) -> tuple[str, ...]:
    import importlib  # the registries live beside their (torch) implementations: load on use

    module, attribute = where.split(":")
    return tuple(getattr(importlib.import_module(module), attribute).names())


NORMS = ("batch", "instance", "layer", "spectral", "none")
WANDB_MODES = ("auto", "offline", "online", "disabled")


def dcgan_layout(size: int) -> tuple[int, int] | None:
    """(stride-2 blocks, side of the smallest map) of a DCGAN for `size` px images, or None.

    Each DCGAN block halves (D) or doubles (G) the map exactly, so a side works when halving it
    (while even and above 7) ends at a 3-7 px map: 64 -> 4 blocks down to 4 px, 28 -> 2 to 7 px.
    Kept here, not in gandist.models, so config validation can name data.image_size without
    importing torch.
    """
    if not 16 <= size <= 256:
        return None
    blocks = 0
    while size > 7 and size % 2 == 0:
        size //= 2
        blocks += 1
    return (blocks, size) if 3 <= size <= 7 else None


DCGAN_IMAGE_SIZES: tuple[int, ...] = tuple(s for s in range(16, 257) if dcgan_layout(s))


@dataclass
class ModelConfig:
    """Generator/discriminator architecture. Sizes come from the data (channels, resolution)."""

    arch: str = _registered("dcgan", "gandist.models:GENERATORS")
    z_dim: int = 100
    # MLP / toy hidden layer widths, input side first.
    g_hidden: list[int] = field(default_factory=lambda: [256, 512, 1024])
    d_hidden: list[int] = field(default_factory=lambda: [512, 256])
    # DCGAN: channels at the highest resolution; each halving of resolution doubles them.
    g_width: int = 64
    d_width: int = 64
    kernel: int = 4
    g_upsample: str = _choice("transposed", ("transposed", "upsample_conv"))
    g_norm: str = _choice("batch", NORMS)
    d_norm: str = _choice("batch", NORMS)
    norm_eps: float = 1e-5
    dropout: float = 0.0
    leaky_slope: float = 0.2
    # DCGAN critic head input: flatten (DCGAN: one weight per position of the last feature map)
    # or sum (SNGAN / projection discriminator: features summed over positions, so the real/fake
    # and label scores see an object the same wherever it sits).
    d_pool: str = _choice("flatten", ("flatten", "sum"))
    # none: unconditional; concat: label embedding joined to z and to D's input (CGAN);
    # project: projection discriminator; acgan: conditional G plus an auxiliary classifier in D.
    condition: str = _choice("none", ("none", "concat", "project", "acgan"))
    embed_dim: int = 50
    # Conditional norm in the DCGAN generator (SNGAN / BigGAN): every norm layer of G gets a
    # per-channel scale and shift computed from the label embedding, so the label reaches every
    # upsampling stage, not only the first layer. Needs a conditional G and a real g_norm.
    g_cond_norm: bool = False
    init: str = _choice("normal", ("normal", "default"))
    # PacGAN (Lin et al. 2018): D judges packs of `pack` samples (all real or all fake) joined
    # along channels / features, one logit per pack; 1: off. See gandist/models/packing.py.
    pack: int = 1
    # TAC-GAN (Gong et al. 2019): the acgan critic gets a twin classifier that learns the labels
    # G was asked for from G's images; G minimises the classifier's loss and maximises the
    # twin's, which cancels ACGAN's pull to the one most classifiable image per label.
    aux_twin: bool = False
    # With d_norm spectral: does the ACGAN classifier layer (and the twin) get spectral norm too?
    # false leaves it free: the norm bounds D's real/fake slope, and on the classifier it caps
    # how well D can read the labels it teaches G (docs/experiments.md, "A free classifier").
    aux_spectral: bool = True
    # With condition acgan: the critic's real/fake logit also gets the projection term
    # <embed(y), h> (Miyato & Koyama 2018), so D judges whether an image looks real *for its
    # labels*, learning from G's images too; the classifier alone learns from real images only.
    aux_project: bool = False

    @property
    def projects_labels(self) -> bool:
        """Whether the critic's real/fake logit has the projection term <embed(y), h>: the
        projection critic, or an ACGAN critic with aux_project. One label per input, so no packs."""
        return self.condition == "project" or (self.condition == "acgan" and self.aux_project)


@dataclass
class LossConfig:
    """Adversarial loss plus the critic regularizer."""

    adversarial: str = _registered("ns", "gandist.objectives.losses:LOSSES")
    penalty: str = _registered("none", "gandist.objectives.penalties:PENALTIES")
    clip_value: float = 0.01
    gp_weight: float = 10.0
    gp_one_sided: bool = False
    r1_gamma: float = 10.0
    aux_weight: float = 1.0
    # ACGAN: does D's classifier also learn the fakes' labels (Odena et al.'s loss) or the real
    # images' only? Fakes teach it G's artifacts, which G then learns to draw.
    aux_fake: bool = True
    # Mode seeking (MSGAN, gandist/objectives/mode_seeking.py): weight of G's term that pushes two
    # z of one condition to different images; 0: off. Needs an even batch share per process.
    mode_seeking: float = 0.0
    # model.aux_twin (TAC-GAN): the twin classifier's terms weigh twin_weight x aux_weight; 1 is
    # TAC-GAN's objective, in which ACGAN's bias cancels; below 1 cancels part of it.
    twin_weight: float = 1.0
    # ACGAN: G's classifier term lets go of a label (multi) or sample (class) once D's classifier
    # gives the requested label this probability; 0: off. A satisfied scene then earns G nothing
    # more from the classifier, so nothing rewards drawing the one most readable scene.
    aux_g_confidence: float = 0.0


@dataclass
class OptimizerConfig:
    name: str = _choice("adam", ("adam", "rmsprop", "sgd"))
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    momentum: float = 0.0
    alpha: float = 0.99
    eps: float = 1e-8
    # Learning-rate schedule over train.steps (gandist/training/schedules.py): constant, linear
    # or cosine decay towards min_lr_ratio x lr at train.steps, after `warmup_steps` of linear
    # warm-up from 0 and then `stable_steps` at lr. Stepped once per training step (one G step
    # and its n_critic D steps).
    schedule: str = _choice("constant", ("constant", "linear", "cosine"))
    warmup_steps: int = 0
    stable_steps: int = 0
    min_lr_ratio: float = 0.0


@dataclass
class OptimConfig:
    g: OptimizerConfig = field(default_factory=OptimizerConfig)
    d: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass
class TrainConfig:
    """Loop length, batch, precision, cadence of samples/checkpoints/logs."""

    steps: int = 2000  # generator updates; each follows n_critic discriminator updates
    n_critic: int = 1
    batch_size: int = 64  # global batch over all processes; each rank takes its slice
    seed: int = 0
    # auto: what accelerate was launched with (`accelerate launch --mixed_precision`, its env or
    # `accelerate config`), else no. An explicit value wins (a conflict is stated at start-up).
    # The run's config.yaml records the precision actually used, never auto.
    precision: str = _choice("auto", ("auto", "no", "bf16", "fp16"))
    # float64 is for verification (1-vs-N-process equivalence to ~1e-10); training uses float32.
    dtype: str = _choice("float32", ("float32", "float64"))
    # NHWC weights and batches for convolutional models: 1.1-1.3x faster steps measured on CPU
    # (docs/performance.md); results match NCHW up to float rounding. false: plain NCHW.
    channels_last: bool = True
    ema: bool = False
    ema_decay: float = 0.999
    # EMA warm-up (StyleGAN2-ADA's ema_rampup): the average's half-life is at most this fraction
    # of the updates so far, so early on it forgets the first, poor generators quickly; it
    # reaches ema_decay's half-life after half_life / ema_rampup updates. 0: off (plain EMA).
    ema_rampup: float = 0.0
    output_dir: str = "runs"
    # The run directory is <output_dir>/<run_name or config name>; a fresh run never overwrites an
    # earlier one there (it takes <name>-2, <name>-3, ...), resume=auto reuses it.
    run_name: str = ""
    resume: str = "none"  # none | auto | path to a checkpoint directory
    # Fine-tuning: start this (new) run from another run's weights: a run directory (its latest
    # checkpoint), a checkpoint directory (G, D and EMA) or a .safetensors file (G only). Step,
    # optimizer state and data position start fresh. Ignored once the run resumes from its own
    # checkpoint (resume wins). See gandist/training/init_from.py.
    init_from: str = ""
    sample_every: int = 500
    num_samples: int = 64
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    # Stop after this many optimizer steps in a row with a non-finite loss (or at once on
    # non-finite parameters). A single one is normal under fp16: the GradScaler skips it.
    max_nonfinite_steps: int = 20
    # DiffAugment (Zhao et al. 2020): ops applied alike to real and fake images before D, in the
    # D and G steps: a comma list of translation, cutout, color; "" (default): off.
    # See gandist/objectives/augment.py.
    augment: str = ""
    # What the ACGAN classifier learns from and judges G by: "same" (default): the view the
    # real/fake score sees; else a subset of train.augment's ops ("" for clean images), with the
    # same per-sample draws. Costs one more D forward in each step. See objectives/augment.py.
    augment_aux: str = "same"


@dataclass
class DataConfig:
    """Where images or points come from. `source` is `name` or `name:argument`."""

    source: str = "digits"
    image_size: int = 0  # 0: the source's default (data/keys.py: digits 32, folder 64, ...)
    channels: int = 0  # 0: the source's native channels
    root: str = "data"
    download: bool = False
    n_samples: int = 0  # generated sources (shapes, glyphs, toy2d): 0 picks the source default
    points_key: str = ""  # variable name inside a .mat/.npz points file
    seed: int = 0  # generation seed for procedural sources
    workers: int = 2  # loader worker processes per training process
    # Image sources train from WebDataset shards: `auto` writes them on first use (into
    # shard_dir, default <root>/shards/<source key>) and streams them; `off` reads the source
    # directly. `source: shards:<dir | pattern | URLs>` streams existing shards.
    shards: str = _choice("auto", ("auto", "off"))
    shard_dir: str = ""
    manifest: str = ""  # dataset.json for shards given as a pattern or pipe: URLs
    shuffle_buffer: int = 1000  # samples per loader worker
    resampled: bool = False  # draw shards with replacement (very large data); epochs are nominal
    epoch_batches: int = 0  # batches per epoch in resampled mode; 0: samples // batch_size
    verify_sha256: bool = False  # hash every local shard against the manifest at start-up


@dataclass
class DistConfig:
    world_size: int = 0  # expected processes; 0 trusts the launcher's WORLD_SIZE
    check_consistency_every: int = 0  # 0: off; else compare parameters across ranks every N steps
    sync_batchnorm: bool = False
    timeout_s: int = 1800
    # Steps between the ranks' stop-signal checks: one asynchronous allreduce each, read at the
    # next check, so a signal stops every rank 1-2 checks later and no step waits for it.
    stop_check_every: int = 1


@dataclass
class TrackingConfig:
    """W&B settings. Precedence is W&B's: a value set here > the WANDB_* variable > the default.

    Empty ("" or []) means "not set here", so WANDB_PROJECT, WANDB_ENTITY, WANDB_DIR,
    WANDB_RUN_GROUP, WANDB_TAGS (comma list) and WANDB_MODE apply; an empty variable counts as
    unset too. Resolved in gandist.tracking.wandb_run.resolve_settings.
    """

    # auto: WANDB_MODE when set, else online when wandb has credentials (WANDB_API_KEY or a
    # `wandb login` key in netrc, no network call), else offline (nothing leaves the machine).
    wandb: str = _choice("auto", WANDB_MODES)
    project: str = ""  # "": WANDB_PROJECT, else gandist
    entity: str = ""  # "": WANDB_ENTITY, else the W&B account's default entity
    dir: str = ""  # where wandb/ is written; "": WANDB_DIR, else the run directory
    group: str = ""  # "": WANDB_RUN_GROUP, else none
    job_type: str = ""  # empty: WANDB_JOB_TYPE, else "train"
    tags: list[str] = field(default_factory=list)  # []: WANDB_TAGS, else none
    init_timeout_s: int = 30  # an unreachable server costs this once, then the run logs offline


@dataclass
class EvalConfig:
    # Metrics that fit the data, logged as eval/* and written to <run>/eval.json at the end:
    # 2-D mixtures (toy2d:ring8/grid25): modes captured, high-quality share, reverse KL.
    # Images: FID, KID, precision/recall, density/coverage in the features of `extractor`, and
    # for conditional models the evaluator's accuracy (F1 for multi-label) on generated samples.
    every: int = 0  # 0: only at the end of training
    n_samples: int = 2000  # generated samples (and real reference samples) per evaluation
    # auto: image metrics when the extractor is available (a trained evaluator for `domain`);
    # on: a missing extractor is an error; off: no image metrics.
    images: str = _choice("auto", ("auto", "on", "off"))
    # domain: the classifier `gandist train-evaluator` trains for the data set (offline data);
    # inception: InceptionV3 FID features (standard FID; needs its weights file locally).
    extractor: str = _choice("domain", ("domain", "inception"))
    evaluator: str = ""  # evaluator directory; empty: <data.root>/evaluators/<data set key>
    # InceptionV3 weights (torch-fidelity's pt_inception-2015-12-05 file); empty: the
    # GANDIST_INCEPTION_WEIGHTS variable, then torch's hub cache; `download` fetches them.
    inception_weights: str = ""
    nearest_k: int = 5  # neighbourhood size of precision/recall/density/coverage
    # Truncation trick (models/truncation.py): score samples from z scaled by psi in (0, 1];
    # raises precision at the cost of recall and FID. 1: off (the honest default).
    truncation: float = 1.0
    # Discriminator rejection sampling (models/rejection.py) for the final scores and
    # `gandist eval`/`sample`: the critic, calibrated `rejection_steps` steps on the frozen G,
    # drops the samples it finds least real; the value is the quantile of its acceptance score
    # used as the shift gamma (0.5 keeps about half of the candidates). 0: off.
    rejection: float = 0.0
    rejection_steps: int = 2000
    kid_subsets: int = 50
    batch_size: int = 200  # generated images per forward pass


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: str = ""  # recipe name; defaults to the YAML file's stem


# ---------------------------------------------------------------- building from dicts


def _fail(origin: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{origin}: {key}: {msg}")


def _check_value(value: Any, tp: Any, origin: str, key: str) -> Any:
    origin_tp = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _fail(origin, key, f"expected a mapping (section), got {type(value).__name__}")
        return _build(tp, value, origin, key)
    if origin_tp in (list, tuple):
        (item_tp,) = typing.get_args(tp)[:1]
        if not isinstance(value, list):
            leaf = key.rsplit(".", 1)[-1]
            raise _fail(
                origin,
                key,
                f"expected a list, got {value!r} (YAML: {leaf}: [0.5, 0.999]; on the command "
                f"line: {key}=[0.5,0.999])",
            )
        return [_check_value(v, item_tp, origin, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin_tp in (typing.Union, types.UnionType):
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(origin, key, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(origin, key, f"expected an integer, got {value!r}{_quoted_number(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(origin, key, f"expected a number, got {value!r}{_quoted_number(value)}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or value is None:
            # YAML 1.1 reads no/yes/on/off/true/false/null as these: the word is gone by now
            raise _fail(
                origin,
                key,
                f"expected a string, got {value!r} (YAML reads no, yes, on, off, true, false "
                f"and null as booleans or null: quote the word, e.g. {key}='\"no\"' on the "
                f'command line or {key.rsplit(".", 1)[-1]}: "no" in YAML)',
            )
        if not isinstance(value, (str, int, float)):
            hint = ""
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                hint = f' (one string, comma-separated: "{",".join(value)}")'
            raise _fail(origin, key, f"expected a string, got {value!r}{hint}")
        return str(value)
    return value


def _quoted_number(value: Any) -> str:
    """The hint for a number written in quotes ("0.0001"): YAML keeps it a string."""
    try:
        float(str(value))
    except ValueError:
        return ""
    return " (a quoted string: write the number without quotes)"


def _build(cls: type, raw: dict[str, Any], origin: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
            if prefix and (elsewhere := _key_elsewhere(str(key), prefix)):
                hint = f"; did you mean '{elsewhere}'?"
            valid = ", ".join(sorted(fields))
            raise _fail(origin, dotted, f"unknown key{hint} (valid keys here: {valid})")
        meta = fields[key].metadata
        choices = meta.get("choices") or (
            _registry_names(meta["registry"]) if "registry" in meta else None
        )
        if isinstance(value, bool) and choices:
            value = _bool_choice(value, choices)
        value = _check_value(value, hints[key], origin, dotted)
        if choices and value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            hint = _CHOICE_HINTS.get((dotted, _plain(str(value))), hint)
            raise _fail(origin, dotted, f"{value!r} is not one of {', '.join(choices)}{hint}")
        kwargs[key] = value
    return cls(**kwargs)


def _sections(cls: type | None = None, prefix: str = "") -> dict[str, type]:
    """Every section of the schema by its dotted name ("model", "optim.g", ...)."""
    cls = cls or Config
    out: dict[str, type] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            name = f"{prefix}{f.name}"
            out[name] = hints[f.name]
            out.update(_sections(hints[f.name], f"{name}."))
    return out


def _key_elsewhere(key: str, section: str) -> str | None:
    """`loss.aux_twin` -> 'model.aux_twin': the key exists, in another section (optim.g's keys
    are offered for optim.d and back)."""
    found = [
        f"{name}.{key}"
        for name, cls in _sections().items()
        if name != section and key in {f.name for f in dataclasses.fields(cls)}
    ]
    return found[0] if len(found) == 1 or (found and section.startswith("optim.")) else None


def _plain(word: str) -> str:
    return word.lower().replace("-", "").replace("_", "").replace(" ", "")


# Names other GAN code uses for what gandist calls by its loss: the value -> the fix.
_WGAN = "; WGAN is loss.adversarial: wasserstein, with loss.penalty: gp (WGAN-GP) or clip"
_CHOICE_HINTS = {
    **{("loss.adversarial", w): _WGAN for w in ("wgan", "wgangp", "wganclip", "wgangc", "w")},
    **{
        ("loss.adversarial", w): "; the standard GAN loss is ns (non-saturating) or minimax"
        for w in ("gan", "vanilla", "standard", "bce", "nonsaturating", "dcgan")
    },
    **{("loss.adversarial", w): "; did you mean 'lsgan'?" for w in ("ls", "leastsquares", "mse")},
}


def _bool_choice(value: bool, choices: tuple[str, ...]) -> str | bool:
    """YAML 1.1 reads `no`/`off` (and `yes`/`on`) as booleans; map them back onto a choice."""
    words = ("on", "yes", "true") if value else ("off", "no", "false")
    return next((w for w in words if w in choices), value)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`optim.d.lr=1e-4` -> {"optim": {"d": {"lr": 1e-4}}}; values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.n_critic=5")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key segment")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    value = _fix_yaml11_floats(value)
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: YAML keeps the last value
    without a word, so `pack: 2` above a forgotten `pack: 4` would train with 4."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue  # `<<: *base` merges (explicit keys may override them); odd keys
            key = self.construct_object(key_node)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"{key!r} is given twice in one section (lines {seen[key]} and {line}); "
                    "YAML would keep only the last: delete one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.load(path.read_text(), Loader=UniqueKeyLoader) or {}  # noqa: S506 (safe)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return _fix_yaml11_floats(raw)


def _fix_yaml11_floats(node: Any) -> Any:
    """PyYAML reads `1e-4` (no dot) as a string; treat such scalars as the numbers users meant."""
    if isinstance(node, dict):
        return {k: _fix_yaml11_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_yaml11_floats(v) for v in node]
    if isinstance(node, str) and _YAML11_MISSED_FLOAT.fullmatch(node.strip()):
        return float(node)
    return node


# What YAML 1.2 reads as a float but PyYAML's 1.1 resolver leaves a string: `1e-4`, `5E3`, `2.e-3`.
_YAML11_MISSED_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def from_dict(raw: dict[str, Any], origin: str = "<config>") -> Config:
    from gandist.config_rules import validate  # it imports this module's schema

    cfg = _build(Config, raw, origin)
    validate(cfg, origin)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe, apply `a.b=c` overrides, validate; errors name the file and the key."""
    path = Path(path)
    raw = _read_yaml(path)
    raw.setdefault("name", path.stem)
    for text in overrides or []:
        raw = _deep_merge(raw, parse_override(text))
    origin = f"{path}" + (f" (with overrides {' '.join(overrides)})" if overrides else "")
    return from_dict(raw, origin)


def to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def __getattr__(name: str) -> Any:
    """`from gandist.config import validate` as before the rules moved to config_rules.py (a
    lazy re-export: config_rules imports this module's schema)."""
    if name == "validate":
        from gandist.config_rules import validate

        return validate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
