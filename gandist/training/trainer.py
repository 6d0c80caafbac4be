"""The training loop: n_critic discriminator steps, one generator step, repeat.

The trainer orchestrates: it builds the parts from the config, feeds them per-rank batches and
global-batch noise, and decides when to log, sample and checkpoint. Model and loss math live in
`gandist.models` and `gandist.objectives`; the update phases in `training.steps`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gandist import __version__
from gandist.config import Config, dump_yaml
from gandist.data.base import DatasetInfo
from gandist.data.pipeline import open_stream
from gandist.data.stream import BatchStream
from gandist.evaluation.image_eval import ImageEvaluator, Unavailable, open_extractor
from gandist.evaluation.toy_metrics import evaluate_modes
from gandist.models import build_discriminator, build_generator
from gandist.objectives.losses import LOSSES
from gandist.run_files import (
    CHECKPOINTS_DIR,
    CONFIG,
    EVAL,
    LOSS_CURVES,
    METRICS,
    SAMPLES_DIR,
    write_status,
)
from gandist.seeds import derive_seed
from gandist.tracking.artifacts import define_eval_summaries, log_final_model
from gandist.tracking.images import save_grid, save_scatter
from gandist.tracking.plots import make_gif, plot_losses
from gandist.tracking.run_log import RunLog
from gandist.tracking.wandb_run import init_kwargs, new_run_id, resolve_mode, resolve_settings
from gandist.training import checkpoint as ckpt
from gandist.training.distributed import (
    assert_world_size,
    build_accelerator,
    check_consistency,
    sync_buffers,
)
from gandist.training.guard import NonFiniteWatch, nonfinite_parameters
from gandist.training.init_from import init_networks
from gandist.training.noise import GlobalNoise, fixed_noise
from gandist.training.optimizers import build_optimizer
from gandist.training.preemption import StopRequest
from gandist.training.steps import GANParts, discriminator_step, generator_step


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    samples_dir: Path
    wandb_dir: Path | None
    preempted: bool = False


def choose_run_dir(cfg: Config) -> Path:
    """Where this run writes. `resume=auto` reuses `<output_dir>/<name>`; a fresh run never
    overwrites an earlier one (it takes `<name>-2`, `<name>-3`, ...)."""
    t = cfg.train
    if t.resume not in ("none", "auto"):
        return ckpt.resolve_checkpoint(t.resume).parent.parent
    base = Path(t.output_dir) / (t.run_name or cfg.name or "run")
    if t.resume == "auto":
        return base
    candidate, n = base, 1
    while (candidate / CHECKPOINTS_DIR).exists() or (candidate / METRICS).exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def fixed_labels(stream: BatchStream, n: int) -> tuple[torch.Tensor | None, int]:
    """Labels for sample grids: one row per class (class-sorted), or the first n label sets."""
    info = stream.info
    if info.label_type == "class":
        per_class = max(1, n // info.num_labels)
        return torch.arange(info.num_labels).repeat_interleave(per_class), per_class
    if info.label_type == "multi":
        return stream.first_samples(n)[1].clone(), 0
    return None, 0


class Trainer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.mode = resolve_mode(cfg.tracking)
        self.acc = build_accelerator(cfg, log_with=None if self.mode == "disabled" else "wandb")
        # The precision that runs (train.precision=auto follows accelerate's launch setting), so
        # the banner, config.yaml, checkpoints and W&B config record it rather than "auto".
        cfg.train.precision = self.acc.mixed_precision
        acc = self.acc
        assert_world_size(acc, cfg.dist.world_size)

        self.stream: BatchStream = open_stream(
            cfg.data,
            cfg.train.batch_size,
            acc.process_index,
            acc.num_processes,
            seed=cfg.train.seed,
            is_writer=acc.is_local_main_process,
            barrier=acc.wait_for_everyone,
        )
        self.info: DatasetInfo = self.stream.info
        # Identical initial weights on every rank and for every world size.
        torch.manual_seed(derive_seed(cfg.train.seed, "init"))
        G = build_generator(cfg.model, self.info)
        D = build_discriminator(cfg.model, self.info)
        # train.init_from: another run's weights, before DDP wraps G and D (resume wins).
        self.init_from = init_networks(cfg, self.info, G, D)
        if cfg.dist.sync_batchnorm:
            if acc.num_processes > 1 and acc.device.type == "cpu":
                raise ValueError(
                    "dist.sync_batchnorm=true needs GPUs: SyncBatchNorm has no CPU (gloo) "
                    "implementation for more than one process; set dist.sync_batchnorm=false"
                )
            G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
            D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(D)
        if cfg.train.dtype == "float64":
            G, D = G.double(), D.double()
        self.channels_last = cfg.train.channels_last and self.info.kind == "image"
        if self.channels_last:  # in place, before the optimizers take the parameters
            G.to(memory_format=torch.channels_last)
            D.to(memory_format=torch.channels_last)
        # From here the global RNG serves dropout only: each rank draws its own masks, as
        # independent samples of a large batch do (accelerate saves and restores it per rank).
        torch.manual_seed(derive_seed(cfg.train.seed, "rank-rng", acc.process_index))
        opt_g = build_optimizer(G.parameters(), cfg.optim.g)
        opt_d = build_optimizer(D.parameters(), cfg.optim.d)
        with warnings.catch_warnings():
            # torch renamed DDP's broadcast_buffers; accelerate still passes the old name.
            warnings.filterwarnings(
                "ignore", message=".*broadcast_buffers.*", category=FutureWarning
            )
            G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
        self.parts = GANParts(
            acc,
            G,
            D,
            opt_g,
            opt_d,
            LOSSES.get(cfg.loss.adversarial),
            cfg.loss,
            self.info.label_type if cfg.model.condition != "none" else "none",
        )
        self.ema: AveragedModel | None = None
        if cfg.train.ema:
            self.ema = AveragedModel(
                self.parts.G_plain,
                use_buffers=True,
                multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay),
            )
        if self.init_from is not None:
            self.init_from.load_ema(self.ema)
        self.noise = GlobalNoise(
            cfg.train.seed, cfg.train.batch_size, acc.process_index, acc.num_processes
        )
        self.z_dim = cfg.model.z_dim
        self.dtype = next(self.parts.G_plain.parameters()).dtype
        self.step = 0
        self.run_id = ""
        self.images_seen = 0
        self.skipped = {"d": 0, "g": 0}  # fp16 optimizer steps skipped by the GradScaler
        self.nonfinite = NonFiniteWatch(acc.device)
        self._scorer: ImageEvaluator | None = None  # image metrics, set up on first use
        self._scorer_checked = False
        self._resume()

    # ------------------------------------------------------------------ set-up

    def _resume(self) -> None:
        cfg, acc = self.cfg, self.acc
        chosen = [str(choose_run_dir(cfg)) if acc.is_main_process else None]
        broadcast_object_list(chosen)
        self.run_dir = Path(chosen[0])  # type: ignore[arg-type]
        found: Path | None = None
        if cfg.train.resume == "auto":
            found = ckpt.latest_checkpoint(self.run_dir)
        elif cfg.train.resume != "none":
            found = ckpt.resolve_checkpoint(cfg.train.resume)
        if found is not None:
            acc.load_state(str(found))
            state = ckpt.read_trainer_state(found)
            self.step = int(state["step"])
            self.images_seen = int(state.get("images_seen", 0))
            self.skipped = dict(state.get("amp_skipped_steps", self.skipped))
            self.stream.load_state_dict(state["data"])
            self.run_id = state.get("wandb_run_id", "")
            if self.ema is not None:
                ckpt.load_module_weights(self.ema.module, found / "ema_generator.safetensors")
                self.ema.n_averaged.fill_(int(state.get("ema_n_averaged", 0)))
        self.resumed_from = found
        if acc.is_main_process:
            (self.run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG).write_text(dump_yaml(cfg))
        if not self.run_id:
            ids = [new_run_id() if acc.is_main_process else None]
            broadcast_object_list(ids)
            self.run_id = str(ids[0])
        if self.mode != "disabled":
            self._init_tracker()
        self.fixed_y, self.grid_nrow = (
            fixed_labels(self.stream, cfg.train.num_samples)
            if cfg.model.condition != "none"
            else (None, 0)
        )
        n = cfg.train.num_samples if self.fixed_y is None else len(self.fixed_y)
        self.fixed_z = fixed_noise(cfg.train.seed, n, self.z_dim)

    def _init_tracker(self) -> None:
        """W&B on the main process; an unreachable server falls back to offline, never stops."""
        cfg = self.cfg

        def init(mode: str) -> None:
            kwargs = init_kwargs(cfg.tracking, mode, self.run_id, self.run_dir, self.run_dir.name)
            self.acc.init_trackers(
                resolve_settings(cfg.tracking).project,
                config=_flat_config(cfg),
                init_kwargs={"wandb": kwargs},
            )

        try:
            init(self.mode)
        except Exception as exc:  # noqa: BLE001 - any W&B failure must not stop training
            if self.mode != "online":
                raise
            print(
                f"gandist: W&B online init failed ({type(exc).__name__}: {exc}); logging "
                "offline instead (upload later with `wandb sync`)",
                file=sys.stderr,
                flush=True,
            )
            import wandb

            wandb.teardown()  # the failed run still holds its id in wandb's service process
            self.mode = "offline"
            self.acc.trackers = []
            init(self.mode)
        if self.acc.is_main_process:  # the best eval/* in the run summary, not only the last
            define_eval_summaries(self.acc.get_tracker("wandb", unwrap=True))

    # ------------------------------------------------------------------ the loop

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = next(self.stream)
        dev = self.acc.device
        x = x.to(dev, dtype=self.dtype, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(dev, non_blocking=True)
        if y.is_floating_point():
            y = y.to(self.dtype)
        return x, y

    def _noise(self, purpose: str) -> torch.Tensor:
        z = self.noise.normal(self.step, purpose, self.z_dim)
        # non_blocking: a blocking host-to-GPU copy waits for the stream (a sync every draw)
        return z.to(self.acc.device, dtype=self.dtype, non_blocking=True)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One outer iteration: n_critic D updates, then one G update."""
        metrics: dict[str, torch.Tensor] = {}
        y = None
        t = self.cfg.train
        upcoming = self.step + 1
        logged = bool(t.log_every) and (upcoming % t.log_every == 0 or upcoming == t.steps)
        gp = self.parts.loss_cfg.penalty == "gp"
        for k in range(self.cfg.train.n_critic):
            # Only the last critic update's metrics are kept, and only logged steps read them.
            self.parts.track_grad_norm = self.parts.full_metrics = (
                logged and k == t.n_critic - 1
            )
            x, y = self._batch()
            z = self._noise(f"d{k}/z")
            eps = (
                self.noise.uniform(self.step, f"d{k}/eps").to(
                    self.acc.device, self.dtype, non_blocking=True
                )
                if gp
                else None
            )
            metrics.update(discriminator_step(self.parts, x, y, z, eps))
            self.skipped["d"] += bool(getattr(self.parts.opt_d, "step_was_skipped", False))
        assert y is not None
        self.parts.track_grad_norm = self.parts.full_metrics = logged
        metrics.update(generator_step(self.parts, y, self._noise("g/z")))
        self.nonfinite.update(metrics["d/loss"], metrics["g/loss"])
        self.skipped["g"] += bool(getattr(self.parts.opt_g, "step_was_skipped", False))
        if self.ema is not None:
            self.ema.update_parameters(self.parts.G_plain)
        self.step += 1
        self.images_seen += self.cfg.train.batch_size * self.cfg.train.n_critic
        return metrics

    def fit(self) -> TrainResult:
        """Train to `train.steps`, or until a stop signal; always leave a status file behind."""
        stop = StopRequest().install()
        try:
            return self._loop(stop)
        except BaseException as exc:
            if self.acc.is_main_process:
                write_status(
                    self.run_dir, "failed", step=self.step, error=f"{type(exc).__name__}: {exc}"
                )
            raise
        finally:
            stop.uninstall()

    def _stop_due(self, stop: StopRequest) -> bool:
        every = self.cfg.dist.stop_check_every
        if self.acc.num_processes > 1 and self.step % every:
            return False  # ranks only compare notes every `every` steps (one allreduce)
        return stop.poll()  # non-blocking: decides on the previous check's allreduce

    def _loop(self, stop: StopRequest) -> TrainResult:
        cfg, acc, t = self.cfg, self.acc, self.cfg.train
        preempted = False
        log = RunLog(acc, self.run_dir, t.steps, self.step, use_tracker=self.mode != "disabled")
        if self.resumed_from is not None:
            log.message(f"resumed from {self.resumed_from} at step {self.step}")
        if self.init_from is not None:
            log.message(self.init_from.message)
        log.message(self._banner())
        last_ckpt = self.resumed_from
        window_t, window_img = time.perf_counter(), 0
        metrics: dict[str, torch.Tensor] = {}
        final_eval: dict[str, float] | None = None
        while self.step < t.steps:
            metrics = self.train_step()
            window_img += t.batch_size * t.n_critic
            log.advance()
            s = self.step
            if cfg.dist.check_consistency_every and s % cfg.dist.check_consistency_every == 0:
                self._sync_buffers()
                check_consistency(acc, self._networks())
            values: dict[str, float] = {}
            if t.log_every and (s % t.log_every == 0 or s == t.steps):
                elapsed = time.perf_counter() - window_t
                values = self._reduce(metrics)
                values.update(self._perf(window_img / max(elapsed, 1e-9)))
                self._guard()
                window_t, window_img = time.perf_counter(), 0
            if (cfg.eval.every and s % cfg.eval.every == 0) or s == t.steps:
                scores = self.evaluate(log)
                if scores is not None:
                    values.update({f"eval/{k}": v for k, v in scores.items()})
                    if s == t.steps:
                        final_eval = scores
            if values:
                log.scalars(s, values)
            if t.sample_every and (s % t.sample_every == 0 or s == t.steps):
                self.write_samples(log)
            if t.checkpoint_every and s % t.checkpoint_every == 0:
                last_ckpt = self.save()
            if s < t.steps and self._stop_due(stop):
                preempted = True
                log.message(
                    f"stopping at step {s} on {stop.signal_name}: saving a checkpoint; "
                    "continue with train.resume=auto"
                )
                break
        stop.drain()  # a stop-flag allreduce still in flight (all ranks launched it)
        if last_ckpt is None or _ckpt_step(last_ckpt) != self.step:
            last_ckpt = self.save()
        if acc.is_main_process:
            write_status(
                self.run_dir,
                "preempted" if preempted else "completed",
                step=self.step,
                steps=t.steps,
                checkpoint=str(last_ckpt),
                signal=stop.signal_name,
            )
        if acc.is_main_process:  # local pictures of the run, with or without W&B
            plot_losses(self.run_dir)
            make_gif(self.run_dir)
        if final_eval is not None and acc.is_main_process:
            (self.run_dir / EVAL).write_text(
                json.dumps({"step": self.step, **final_eval}, indent=2)
            )
        if not preempted and self.mode != "disabled" and acc.is_main_process:
            run = acc.get_tracker("wandb", unwrap=True)
            log_final_model(run, last_ckpt, self.run_dir, self.stream, ema=self.ema is not None)
        log.close()
        wandb_dir = self._wandb_dir()
        # Trackers end with the run; the process group stays for the caller (the CLI ends it),
        # so one process can train several runs (the Python API, the recipe test suites).
        for tracker in acc.trackers:
            tracker.finish()
        result = TrainResult(
            self.run_dir, self.step, last_ckpt, self.run_dir / SAMPLES_DIR, wandb_dir, preempted
        )
        if acc.is_main_process:
            print(self._summary(result), flush=True)
        return result

    # ------------------------------------------------------------------ helpers

    def _reduce(self, metrics: dict[str, torch.Tensor]) -> dict[str, float]:
        """Mean of each metric over ranks (a collective: every rank calls it)."""
        keys = sorted(metrics)
        stacked = torch.stack([metrics[k].float().reshape(()) for k in keys])
        stacked = self.acc.reduce(stacked, reduction="mean")
        values = dict(zip(keys, stacked.tolist(), strict=True))
        values["epoch"] = self.stream.epoch + self.stream.position / self.stream.batches_per_epoch
        values["images_seen"] = float(self.images_seen)
        values["lr/g"] = self.parts.opt_g.param_groups[0]["lr"]
        values["lr/d"] = self.parts.opt_d.param_groups[0]["lr"]
        if self.acc.scaler is not None:  # fp16: skipped optimizer steps so far (all ranks agree)
            values["amp/d_skipped_steps"] = float(self.skipped["d"])
            values["amp/g_skipped_steps"] = float(self.skipped["g"])
            values["amp/loss_scale"] = float(self.acc.scaler.get_scale())
        return values

    def _perf(self, img_per_s: float) -> dict[str, float]:
        out = {
            "perf/img_per_s": img_per_s,
            "perf/img_per_s_per_device": img_per_s / self.acc.num_processes,
        }
        if torch.cuda.is_available():
            out["perf/gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        return out

    def _guard(self) -> None:
        """Stop on a streak of non-finite losses or on non-finite parameters (see guard.py); a
        lone non-finite loss, such as an fp16 step the GradScaler skipped, carries on."""
        limit = self.cfg.train.max_nonfinite_steps
        worst = self.nonfinite.take_worst()
        broken = nonfinite_parameters(
            {"generator": self.parts.G_plain, "discriminator": self.parts.D_plain}
        )
        if worst < limit and not broken:
            return
        latest = ckpt.latest_checkpoint(self.run_dir)
        what = (
            f"non-finite parameters in the {' and '.join(broken)}"
            if broken
            else f"{worst} steps in a row with a non-finite loss "
            f"(train.max_nonfinite_steps={limit})"
        )
        raise FloatingPointError(
            f"step {self.step}: {what}; training stopped. The last good checkpoint is "
            f"{latest or 'none (no checkpoint yet)'}. Lower the learning rates, use "
            "train.precision=no, or check the penalty settings."
        )

    def _networks(self) -> dict[str, torch.nn.Module]:
        nets = {"G": self.parts.G_plain, "D": self.parts.D_plain}
        if self.ema is not None:
            nets["G_ema"] = self.ema.module
        return nets

    def _sync_buffers(self) -> None:
        """Average BatchNorm statistics over ranks, the EMA generator's included: it averages
        each rank's local statistics, so without this its copies differ per rank."""
        sync_buffers(self.acc, *self._networks().values())

    def generator_for_samples(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.parts.G_plain

    @torch.no_grad()
    def write_samples(self, log: RunLog | None = None) -> Path | None:
        """Fixed-noise grid (or scatter) from the unwrapped G; every rank syncs buffers first."""
        self._sync_buffers()
        if not self.acc.is_main_process:
            return None
        G = self.generator_for_samples()
        was_training = G.training
        G.eval()
        z = self.fixed_z.to(self.acc.device, self.dtype)
        y = None if self.fixed_y is None else self.fixed_y.to(self.acc.device)
        if y is not None and y.is_floating_point():
            y = y.to(self.dtype)
        out = G(z, y)
        G.train(was_training)
        path = self.run_dir / SAMPLES_DIR / f"step_{self.step:06d}.png"
        if self.info.kind == "points":
            save_scatter(
                out,
                path,
                real=self.stream.first_samples(2000)[0],
                title=f"{self.cfg.name} step {self.step}",
            )
        else:
            save_grid(out, path, nrow=self.grid_nrow or None)
        if log is not None:
            log.image(self.step, "samples", path, caption=f"step {self.step}")
        return path

    def evaluate(self, log: RunLog | None = None) -> dict[str, float] | None:
        """Metrics that fit the data kind (2-D mixtures: mode coverage; images: FID and friends
        when an extractor is available); None off the main rank. Every rank calls it."""
        self._sync_buffers()
        if self.info.kind == "image":
            scorer = self._image_evaluator(log)
            return (
                None
                if scorer is None
                else scorer(self.generator_for_samples(), self.cfg.train.seed)
            )
        if not self.acc.is_main_process:
            return None
        return evaluate_modes(
            self.generator_for_samples(),
            self.info.extras,
            self.cfg.eval.n_samples,
            self.cfg.train.seed,
            self.acc.device,
        )

    def _image_evaluator(self, log: RunLog | None) -> ImageEvaluator | None:
        """Set up once, on first use (every rank decides alike: same files, same config)."""
        if not self._scorer_checked:
            self._scorer_checked = True
            if self.cfg.eval.images != "off":
                info = self.info
                if self.cfg.model.condition == "none":
                    info = dataclasses.replace(info, label_type="none")
                extractor = open_extractor(self.cfg, info)
                if isinstance(extractor, Unavailable):
                    if self.cfg.eval.images == "on":
                        raise FileNotFoundError(f"eval.images=on: {extractor.reason}")
                    if log is not None:
                        log.message(f"image metrics off: {extractor.reason}")
                else:
                    self._scorer = ImageEvaluator(self.cfg, info, extractor, self.acc)
        return self._scorer

    def trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.stream.epoch,
            "data": self.stream.state_dict(),
            "images_seen": self.images_seen,
            "amp_skipped_steps": self.skipped,
            "wandb_run_id": self.run_id,
            "ema_n_averaged": int(self.ema.n_averaged.item()) if self.ema is not None else 0,
            "world_size": self.acc.num_processes,
            "gandist_version": __version__,
            "config_name": self.cfg.name,
            "data_info": {
                "kind": self.info.kind,
                "channels": self.info.channels,
                "image_size": self.info.image_size,
                "label_type": self.info.label_type,
                "num_labels": self.info.num_labels,
                "label_names": list(self.info.label_names),
                "point_dim": self.info.point_dim,
                "source": self.info.source,
            },
        }

    def _assert_finite_parameters(self) -> None:
        nets = {"generator": self.parts.G_plain, "discriminator": self.parts.D_plain}
        for name in nonfinite_parameters(nets):
            latest = ckpt.latest_checkpoint(self.run_dir)
            raise FloatingPointError(
                f"step {self.step}: the {name} has non-finite parameters; not saving them. "
                f"The last good checkpoint is {latest or 'none'}. Lower the learning rates "
                "or use train.precision=no."
            )

    def save(self) -> Path:
        self._assert_finite_parameters()
        self._sync_buffers()
        exports = {"generator": self.parts.G_plain, "discriminator": self.parts.D_plain}
        if self.ema is not None:
            exports["ema_generator"] = self.ema.module
        return ckpt.save_checkpoint(
            self.acc,
            self.run_dir,
            self.step,
            exports,
            self.trainer_state(),
            dump_yaml(self.cfg),
            self.cfg.train.keep_checkpoints,
        )

    def _wandb_dir(self) -> Path | None:
        if self.mode == "disabled" or not self.acc.is_main_process:
            return None
        try:
            run = self.acc.get_tracker("wandb", unwrap=True)
            return Path(run.dir).parent
        except Exception:  # noqa: BLE001 - tracker absence must not fail a finished run
            return None

    def _banner(self) -> str:
        i, t = self.info, self.cfg.train
        shape = "x".join(map(str, i.sample_shape))
        return (
            f"gandist {__version__}: {self.cfg.name} | data {i.source} ({self.stream.num_samples} "
            f"samples, {shape}, labels {i.label_type}) | {self.acc.num_processes} process(es) on "
            f"{self.acc.device.type}, precision {t.precision} | global batch {t.batch_size}, "
            f"n_critic {t.n_critic}, {t.steps} steps | run dir {self.run_dir}"
        )

    def _summary(self, r: TrainResult) -> str:
        lines = [
            f"done: {r.step} steps",
            f"  run directory : {r.run_dir}",
            f"  sample grids  : {r.samples_dir}",
            f"  checkpoint    : {r.checkpoint}",
            f"  metrics       : {r.run_dir / METRICS} (curves: {LOSS_CURVES})",
            f"  report        : gandist report {r.run_dir}",
        ]
        scores = r.run_dir / EVAL
        if scores.is_file():
            record = json.loads(scores.read_text())
            shown = [k for k in ("fid", "cond_accuracy", "modes_captured") if k in record]
            brief = ", ".join(f"{k} {record[k]:.4g}" for k in shown)
            lines.append(f"  evaluation    : {scores}" + (f" ({brief})" if brief else ""))
        if r.wandb_dir is not None:
            lines.append(f"  W&B ({self.mode}) : {r.wandb_dir}")
            if self.mode == "offline":
                lines.append(f"  upload later  : wandb sync {r.wandb_dir}")
        return "\n".join(lines)


def _ckpt_step(path: Path) -> int:
    m = ckpt.STEP_DIR.match(path.name)
    return int(m.group(1)) if m else -1


def _flat_config(cfg: Config) -> dict[str, Any]:
    from gandist.config import to_dict

    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = node

    walk("", to_dict(cfg))
    return flat


def train(cfg: Config) -> TrainResult:
    return Trainer(cfg).fit()
