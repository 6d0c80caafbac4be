"""The training loop: n_critic discriminator steps, one generator step, repeat.

The trainer orchestrates: it builds the parts from the config, feeds them per-rank batches and
global-batch noise, and decides when to log, sample, evaluate and checkpoint. Model and loss math
live in `gandist.models` and `gandist.objectives`, the update phases in `training.steps`, the
networks' construction in `training.networks`, sample grids and the evaluator in
`training.samples`, the run directory's files in `gandist.run_files`.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list

from gandist.config import Config, dump_yaml
from gandist.data.base import DatasetInfo
from gandist.data.pipeline import open_stream
from gandist.data.stream import BatchStream
from gandist.models.packing import check_pack_batch
from gandist.objectives.augment import Params, check_data, draw_params, parse_policy
from gandist.objectives.losses import LOSSES
from gandist.run_files import CONFIG, EVAL, SAMPLES_DIR, write_status
from gandist.tracking.artifacts import log_final_model
from gandist.tracking.plots import make_gif, plot_losses
from gandist.tracking.run_log import RunLog
from gandist.tracking.summary import banner, start_tracker, summary
from gandist.tracking.wandb_run import new_run_id, resolve_mode
from gandist.training import checkpoint as ckpt
from gandist.training.distributed import (
    assert_world_size,
    build_accelerator,
    check_consistency,
    sync_buffers,
)
from gandist.training.ema import EMAGenerator
from gandist.training.guard import NonFiniteWatch, check_health, nonfinite_parameters
from gandist.training.networks import build_networks, reseed_for_rank, uses_channels_last
from gandist.training.noise import GlobalNoise
from gandist.training.optimizers import build_optimizer
from gandist.training.preemption import StopRequest
from gandist.training.samples import Scorer, fixed_inputs, render_samples
from gandist.training.schedules import build_schedules
from gandist.training.steps import GANParts, discriminator_step, generator_step


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    samples_dir: Path
    wandb_dir: Path | None
    preempted: bool = False


def _due(every: int, step: int, last: int = 0) -> bool:
    """Whether a periodic job (every `every` steps, 0: never) runs after `step`; with `last`,
    also after the final step."""
    return bool(every) and (step % every == 0 or step == last)


class Trainer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        t = cfg.train

        # Launch: devices, processes, precision.
        self.mode = resolve_mode(cfg.tracking)
        self.acc = acc = build_accelerator(
            cfg, log_with=None if self.mode == "disabled" else "wandb"
        )
        # The precision that runs (train.precision=auto follows accelerate's launch setting), so
        # the banner, config.yaml, checkpoints and W&B config record it rather than "auto".
        t.precision = acc.mixed_precision
        assert_world_size(acc, cfg.dist.world_size)

        # Open this rank's data stream.
        self.stream: BatchStream = open_stream(
            cfg.data,
            t.batch_size,
            acc.process_index,
            acc.num_processes,
            seed=t.seed,
            is_writer=acc.is_local_main_process,
            barrier=acc.wait_for_everyone,
        )
        self.info: DatasetInfo = self.stream.info

        # Build networks and optimizers.
        G, D, self.init_from = build_networks(
            cfg, self.info, acc.num_processes, acc.device.type == "cpu"
        )
        self.channels_last = uses_channels_last(cfg, self.info)
        reseed_for_rank(cfg, acc.process_index)
        opt_g = build_optimizer(G.parameters(), cfg.optim.g)
        opt_d = build_optimizer(D.parameters(), cfg.optim.d)

        # Distribute.
        with warnings.catch_warnings():
            # torch renamed DDP's broadcast_buffers; accelerate still passes the old name.
            warnings.filterwarnings(
                "ignore", message=".*broadcast_buffers.*", category=FutureWarning
            )
            G, D, opt_g, opt_d = acc.prepare(G, D, opt_g, opt_d)
        self.parts = GANParts(
            accelerator=acc,
            G=G,
            D=D,
            opt_g=opt_g,
            opt_d=opt_d,
            loss=LOSSES.get(cfg.loss.adversarial),
            loss_cfg=cfg.loss,
            label_type=self.info.label_type if cfg.model.condition != "none" else "none",
            pack=cfg.model.pack,
            augment=parse_policy(t.augment),
        )
        self.ema: EMAGenerator | None = None
        if t.ema:
            self.ema = EMAGenerator(self.parts.G_plain, t.ema_decay)
        if self.init_from is not None:
            self.init_from.load_ema(self.ema)

        # Techniques (issue #14): whole packs on every rank, augmentation for images only, and
        # learning-rate schedules that checkpoints carry (registered, not prepared: see
        # training/schedules.py). Before the checkpoint is loaded, which restores them.
        check_pack_batch(cfg.model.pack, t.batch_size, acc.num_processes)
        check_data(self.parts.augment, self.info.kind)
        self.schedules = build_schedules(
            {"g": opt_g, "d": opt_d}, {"g": cfg.optim.g, "d": cfg.optim.d}, t.steps
        )
        if self.schedules is not None:
            acc.register_for_checkpointing(self.schedules)
        self.lr_used = self._learning_rates()  # what the last step ran with (logged as lr/*)

        # Per-step state.
        # z of every update and epsilon, drawn for several steps per pass (training/noise.py)
        z_of = {f"d{k}/z": cfg.model.z_dim for k in range(t.n_critic)} | {"g/z": cfg.model.z_dim}
        eps_of = [f"d{k}/eps" for k in range(t.n_critic)] if self.parts.penalty.needs_eps else []
        self.noise = GlobalNoise(
            t.seed, t.batch_size, acc.process_index, acc.num_processes, z_of, eps_of
        )
        self.z_dim = cfg.model.z_dim
        self.dtype = next(self.parts.G_plain.parameters()).dtype
        self.step = 0
        self.images_seen = 0
        self.skipped = {"d": 0, "g": 0}  # fp16 optimizer steps skipped by the GradScaler
        self.nonfinite = NonFiniteWatch(acc.device)
        self.scorer = Scorer(cfg, self.info, acc)

        # Resume, record the run, start tracking.
        self.run_dir = self._choose_run_dir()
        self.resumed_from = self._load_checkpoint()
        self._write_run_config()
        self.run_id = self.run_id or self._mint_run_id()
        if self.mode != "disabled":
            self._init_tracker()
        self.fixed = fixed_inputs(cfg, self.stream)

    # ------------------------------------------------------------------ set-up

    def _choose_run_dir(self) -> Path:
        """The main process decides (it sees what earlier runs left); every rank agrees."""
        chosen = [str(ckpt.choose_run_dir(self.cfg)) if self.acc.is_main_process else None]
        broadcast_object_list(chosen)
        return Path(chosen[0])  # type: ignore[arg-type]

    def _load_checkpoint(self) -> Path | None:
        """Restore everything a checkpoint holds (train.resume); None for a fresh run."""
        cfg, acc = self.cfg, self.acc
        self.run_id = ""
        found: Path | None = None
        if cfg.train.resume == "auto":
            found = ckpt.latest_checkpoint(self.run_dir)
        elif cfg.train.resume != "none":
            found = ckpt.resolve_checkpoint(cfg.train.resume)
        if found is None:
            return None
        acc.load_state(str(found))
        state = ckpt.read_trainer_state(found)
        self.step = int(state["step"])
        self.images_seen = int(state.get("images_seen", 0))
        self.skipped = dict(state.get("amp_skipped_steps", self.skipped))
        self.stream.load_state_dict(state["data"])
        self.run_id = state.get("wandb_run_id", "")
        if self.ema is not None:
            ckpt.load_module_weights(self.ema.module, found / "ema_generator.safetensors")
            self.ema.load_count(int(state.get("ema_n_averaged", 0)))
        return found

    def _write_run_config(self) -> None:
        if self.acc.is_main_process:
            (self.run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG).write_text(dump_yaml(self.cfg))

    def _mint_run_id(self) -> str:
        """A W&B run id for a fresh run, the same on every rank; kept in every checkpoint."""
        ids = [new_run_id() if self.acc.is_main_process else None]
        broadcast_object_list(ids)
        return str(ids[0])

    def _init_tracker(self) -> None:
        """W&B on the main process; an unreachable server falls back to offline, never stops."""
        self.mode = start_tracker(self.acc, self.cfg, self.mode, self.run_id, self.run_dir)

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

    def _eps(self, purpose: str) -> torch.Tensor | None:
        """Per-sample interpolation weights, drawn only for penalties that use them."""
        if not self.parts.penalty.needs_eps:
            return None
        eps = self.noise.uniform(self.step, purpose)
        return eps.to(self.acc.device, self.dtype, non_blocking=True)

    def _aug(self, purpose: str) -> Params | None:
        """DiffAugment's per-sample parameters (train.augment), drawn like eps: per sample of the
        global batch, one stream per parameter; None when augmentation is off."""
        if not self.parts.augment:
            return None
        dev, dtype = self.acc.device, self.dtype

        def uniform(name: str) -> torch.Tensor:
            u = self.noise.uniform(self.step, f"{purpose}/{name}")
            return u.to(dev, dtype, non_blocking=True)

        return draw_params(self.parts.augment, uniform)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One outer iteration: n_critic D updates, then one G update."""
        metrics: dict[str, torch.Tensor] = {}
        y = None
        t = self.cfg.train
        logged = _due(t.log_every, self.step + 1, t.steps)
        for k in range(t.n_critic):
            # Only the last critic update's metrics are kept, and only logged steps read them.
            x, y = self._batch()
            z, eps = self._noise(f"d{k}/z"), self._eps(f"d{k}/eps")
            track = logged and k == t.n_critic - 1
            aug = self._aug(f"d{k}/aug/real"), self._aug(f"d{k}/aug/fake")
            metrics.update(discriminator_step(self.parts, x, y, z, eps, track=track, aug=aug))
            self.skipped["d"] += bool(getattr(self.parts.opt_d, "step_was_skipped", False))
        assert y is not None
        z = self._noise("g/z")
        metrics.update(generator_step(self.parts, y, z, track=logged, aug=self._aug("g/aug/fake")))
        self.nonfinite.update(metrics["d/loss"], metrics["g/loss"])
        self.skipped["g"] += bool(getattr(self.parts.opt_g, "step_was_skipped", False))
        if self.ema is not None:
            self.ema.update_parameters(self.parts.G_plain)
        # The learning rates this step ran with (logged), then the next step's (schedules.py).
        self.lr_used = self._learning_rates()
        if self.schedules is not None:
            self.schedules.step()
        self.step += 1
        self.images_seen += t.batch_size * t.n_critic
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
        if self.acc.num_processes > 1 and not _due(self.cfg.dist.stop_check_every, self.step):
            return False  # ranks only compare notes every `every` steps (one allreduce)
        return stop.poll()  # non-blocking: decides on the previous check's allreduce

    def _loop(self, stop: StopRequest) -> TrainResult:
        cfg, t = self.cfg, self.cfg.train
        log = RunLog(
            self.acc, self.run_dir, t.steps, self.step, use_tracker=self.mode != "disabled"
        )
        if self.resumed_from is not None:
            log.message(f"resumed from {self.resumed_from} at step {self.step}")
        if self.init_from is not None:
            log.message(self.init_from.message)
        log.message(self._banner())
        self.last_ckpt = self.resumed_from
        window_t, window_img = time.perf_counter(), 0
        final_eval: dict[str, float] | None = None
        preempted = False
        while self.step < t.steps:
            metrics = self.train_step()
            window_img += t.batch_size * t.n_critic
            log.advance()
            s = self.step
            if _due(cfg.dist.check_consistency_every, s):
                self._sync_buffers()
                check_consistency(self.acc, self._networks())
            values: dict[str, float] = {}
            if _due(t.log_every, s, t.steps):
                elapsed = time.perf_counter() - window_t
                values = self._reduce(metrics)
                values.update(self._perf(window_img / max(elapsed, 1e-9)))
                self._guard()
                window_t, window_img = time.perf_counter(), 0
            if _due(cfg.eval.every, s) or s == t.steps:
                scores = self.evaluate(log)
                if scores is not None:
                    values.update({f"eval/{k}": v for k, v in scores.items()})
                    final_eval = scores if s == t.steps else final_eval
            if values:
                log.scalars(s, values)
            if _due(t.sample_every, s, t.steps):
                self.write_samples(log)
            if _due(t.checkpoint_every, s):
                self.last_ckpt = self.save()
            if s < t.steps and self._stop_due(stop):
                preempted = True
                log.message(
                    f"stopping at step {s} on {stop.signal_name}: saving a checkpoint; "
                    "continue with train.resume=auto"
                )
                break
        stop.drain()  # a stop-flag allreduce still in flight (all ranks launched it)
        return self._finish(log, stop, preempted, final_eval)

    def _finish(
        self,
        log: RunLog,
        stop: StopRequest,
        preempted: bool,
        final_eval: dict[str, float] | None,
    ) -> TrainResult:
        """Last checkpoint, status.json, local pictures, eval.json, the W&B model, the summary."""
        acc = self.acc
        if self.last_ckpt is None or ckpt.checkpoint_step(self.last_ckpt) != self.step:
            self.last_ckpt = self.save()
        if acc.is_main_process:
            write_status(
                self.run_dir,
                "preempted" if preempted else "completed",
                step=self.step,
                steps=self.cfg.train.steps,
                checkpoint=str(self.last_ckpt),
                signal=stop.signal_name,
            )
            plot_losses(self.run_dir)  # local pictures of the run, with or without W&B
            make_gif(self.run_dir)
            if final_eval is not None:
                (self.run_dir / EVAL).write_text(
                    json.dumps({"step": self.step, **final_eval}, indent=2)
                )
            if not preempted and self.mode != "disabled":
                run = acc.get_tracker("wandb", unwrap=True)
                log_final_model(
                    run, self.last_ckpt, self.run_dir, self.stream, ema=self.ema is not None
                )
        log.close()
        wandb_dir = self._wandb_dir()
        # Trackers end with the run; the process group stays for the caller (the CLI ends it),
        # so one process can train several runs (the Python API, the recipe test suites).
        for tracker in acc.trackers:
            tracker.finish()
        result = TrainResult(
            self.run_dir,
            self.step,
            self.last_ckpt,
            self.run_dir / SAMPLES_DIR,
            wandb_dir,
            preempted,
        )
        if acc.is_main_process:
            r = result
            text = summary(r.step, r.run_dir, r.samples_dir, r.checkpoint, r.wandb_dir, self.mode)
            print(text, flush=True)
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
        values["lr/g"], values["lr/d"] = self.lr_used
        if self.acc.scaler is not None:  # fp16: skipped optimizer steps so far (all ranks agree)
            values["amp/d_skipped_steps"] = float(self.skipped["d"])
            values["amp/g_skipped_steps"] = float(self.skipped["g"])
            values["amp/loss_scale"] = float(self.acc.scaler.get_scale())
        return values

    def _learning_rates(self) -> tuple[float, float]:
        return (
            self.parts.opt_g.param_groups[0]["lr"],
            self.parts.opt_d.param_groups[0]["lr"],
        )

    def _perf(self, img_per_s: float) -> dict[str, float]:
        out = {
            "perf/img_per_s": img_per_s,
            "perf/img_per_s_per_device": img_per_s / self.acc.num_processes,
        }
        if torch.cuda.is_available():
            out["perf/gpu_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        return out

    def _guard(self) -> None:
        """Stop on a streak of non-finite losses or non-finite parameters (a collective)."""
        check_health(
            self.nonfinite.take_worst(),
            self.cfg.train.max_nonfinite_steps,
            nonfinite_parameters(self._trained()),
            self.step,
            self.run_dir,
        )

    def _trained(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.parts.G_plain, "discriminator": self.parts.D_plain}

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

    def write_samples(self, log: RunLog | None = None) -> Path | None:
        """Fixed-input grid (or scatter) from the unwrapped G; every rank syncs buffers first."""
        self._sync_buffers()
        if not self.acc.is_main_process:
            return None
        path = render_samples(
            self.generator_for_samples(),
            self.fixed,
            self.stream,
            self.run_dir / SAMPLES_DIR / f"step_{self.step:06d}.png",
            f"{self.cfg.name} step {self.step}",
            self.acc.device,
            self.dtype,
        )
        if log is not None:
            log.image(self.step, "samples", path, caption=f"step {self.step}")
        return path

    def evaluate(self, log: RunLog | None = None) -> dict[str, float] | None:
        """The run's metrics (see samples.Scorer); every rank calls it."""
        self._sync_buffers()
        return self.scorer(self.generator_for_samples(), log.message if log else lambda _: None)

    def trainer_state(self) -> dict[str, Any]:
        return ckpt.trainer_state(
            step=self.step,
            data=self.stream.state_dict(),
            images_seen=self.images_seen,
            amp_skipped_steps=self.skipped,
            wandb_run_id=self.run_id,
            ema_n_averaged=int(self.ema.n_averaged.item()) if self.ema is not None else 0,
            world_size=self.acc.num_processes,
            config_name=self.cfg.name,
            info=self.info,
        )

    def save(self) -> Path:
        check_health(0, 1, nonfinite_parameters(self._trained()), self.step, self.run_dir)
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
        return banner(
            self.cfg,
            self.info,
            self.stream.num_samples,
            self.acc.num_processes,
            self.acc.device.type,
            self.run_dir,
        )


def train(cfg: Config) -> TrainResult:
    return Trainer(cfg).fit()
