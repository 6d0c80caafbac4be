"""The training loop: n_critic discriminator steps, one generator step, repeat.

The trainer orchestrates: it builds the parts from the config, feeds them per-rank batches and
global-batch noise, and decides when to log, sample, evaluate and checkpoint. Model and loss math
live in `gandist.models` and `gandist.objectives`, the update phases in `training.steps`, the
networks' construction in `training.networks`, sample grids and the evaluator in
`training.samples`, the run directory's files in `gandist.run_files`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, is_compiled_module

from gandist.config import Config, dump_yaml
from gandist.data.base import DatasetInfo
from gandist.data.pipeline import open_stream
from gandist.data.stream import BatchStream
from gandist.models.packing import check_pack_batch
from gandist.objectives.augment import check_data
from gandist.objectives.mode_seeking import check_pair_batch
from gandist.run_files import CONFIG, SAMPLES_DIR, read_metrics, write_status
from gandist.seeds import derive_seed
from gandist.tracking.run_log import RunLog
from gandist.tracking.step_metrics import progress, reduce_metrics, throughput
from gandist.tracking.summary import (
    banner,
    record_end,
    start_tracker,
    summary,
    wandb_local_dir,
)
from gandist.tracking.wandb_run import new_run_id, place_of, resolve_mode, resolve_settings
from gandist.training import checkpoint as ckpt
from gandist.training.distributed import (
    assert_world_size,
    build_accelerator,
    check_consistency,
    sync_buffers,
)
from gandist.training.ema import EMAGenerator
from gandist.training.guard import NonFiniteWatch, check_health, nonfinite_parameters
from gandist.training.networks import (
    build_networks,
    distribute,
    reseed_for_rank,
    uses_channels_last,
)
from gandist.training.optimizers import apply_settings, build_optimizer
from gandist.training.preemption import StopRequest
from gandist.training.run_lock import RunInUse, hold_run_dir, release_run_dir
from gandist.training.samples import Scorer, fixed_inputs, render_samples
from gandist.training.schedules import set_rates_at
from gandist.training.step_inputs import StepInputs
from gandist.training.steps import discriminator_step, generator_step
from gandist.training.weights_fit import check_resume_fits


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
        self.parts = distribute(acc, cfg, self.info, G, D, opt_g, opt_d)
        self.ema: EMAGenerator | None = None
        if t.ema:
            self.ema = EMAGenerator(self.parts.G_plain, t.ema_decay, t.ema_rampup)
        if self.init_from is not None:
            self.init_from.load_ema(self.ema)

        # Techniques (issue #14): whole packs on every rank, augmentation for images only, and
        # learning-rate schedules (the rate of each step, set here: training/schedules.py).
        check_pack_batch(cfg.model.pack, t.batch_size, acc.num_processes)
        check_pair_batch(cfg.loss.mode_seeking, t.batch_size, acc.num_processes)
        check_data(self.parts.augment, self.info.kind)
        self._set_rates(0)
        self.lr_used = self._learning_rates()  # what the last step ran with (logged as lr/*)

        # Per-step state.
        self.dtype = next(self.parts.G_plain.parameters()).dtype
        self.inputs = StepInputs(
            self.stream,
            seed=t.seed,
            global_batch=t.batch_size,
            rank=acc.process_index,
            world_size=acc.num_processes,
            n_critic=t.n_critic,
            z_dim=cfg.model.z_dim,
            needs_eps=self.parts.penalty.needs_eps,
            augment=self.parts.augment,
            device=acc.device,
            dtype=self.dtype,
            channels_last=self.channels_last,
        )
        self.step = 0
        self.images_seen = 0
        self.skipped = {"d": 0, "g": 0}  # fp16 optimizer steps skipped by the GradScaler
        self.nonfinite = NonFiniteWatch(acc.device)
        self.scorer = Scorer(cfg, self.info, acc)

        # Resume, record the run, start tracking.
        # The main process decides (it sees what earlier runs left); every rank agrees.
        self.run_dir = Path(self._agreed(lambda: str(ckpt.choose_run_dir(cfg))))
        self.lock_note = self._hold_run_dir()  # before anything is written there
        try:
            self.resumed_from = self._load_checkpoint()
            self._write_run_config()
            self.run_id = self.run_id or self._agreed(new_run_id)  # W&B's, kept in checkpoints
            # Where the W&B run lives, kept in checkpoints: a run not logged yet has none.
            self.wandb_place = dict(self.wandb_saved)
            if self.mode != "disabled":
                self._init_tracker()
            self.fixed = fixed_inputs(cfg, self.stream)
        except BaseException:
            release_run_dir(self.run_dir)  # a refused resume leaves the directory free
            raise

    # ------------------------------------------------------------------ set-up

    def _agreed(self, make: Callable[[], str]) -> str:
        """A value the main process makes, the same on every rank."""
        box = [make() if self.acc.is_main_process else None]
        broadcast_object_list(box)
        return str(box[0])

    def _hold_run_dir(self) -> str:
        """The main process locks the run directory (training/run_lock.py); every rank stops
        with the holder's name when another job trains into it."""
        in_use = "in use: "

        def hold() -> str:
            try:
                return hold_run_dir(self.run_dir)
            except RunInUse as exc:
                return in_use + str(exc)

        said = self._agreed(hold)
        if said.startswith(in_use):
            raise RunInUse(said[len(in_use) :])
        return said

    def _load_checkpoint(self) -> Path | None:
        """Restore everything a checkpoint holds (train.resume); None for a fresh run."""
        resume = self.cfg.train.resume
        self.run_id = ""
        self.wandb_saved: dict[str, str] = {}  # where the resumed run's W&B run lives
        self.pending_outputs: dict[str, Any] | None = None  # the checkpoint step's, if recorded
        self.resume_changes: list[str] = []  # optimizer settings the config changed
        if resume == "none":
            return None
        found = (
            ckpt.latest_checkpoint(self.run_dir)
            if resume == "auto"
            else ckpt.resolve_checkpoint(resume)
        )
        if found is None:
            return None
        at, steps = ckpt.checkpoint_step(found), self.cfg.train.steps
        if at > steps:  # before anything is rewritten (config.yaml, status.json)
            raise ValueError(
                f"train.steps={steps} is below step {at} of the checkpoint {found}: a run does "
                f"not train backwards. Raise train.steps to continue it, score it with "
                f"`gandist eval {found}`, or start a new run (another train.run_name)"
            )
        opts = {"g": self.parts.opt_g, "d": self.parts.opt_d}
        cfgs = {"g": self.cfg.optim.g, "d": self.cfg.optim.d}
        names = {net: c.name for net, c in cfgs.items()}
        nets = {"generator": self.parts.G_plain, "discriminator": self.parts.D_plain}
        check_resume_fits(found, self.cfg, self.info, nets)
        state = ckpt.restore(self.acc, found, self.stream, self.ema, names)
        self.step = int(state["step"])
        self._set_rates(self.step)
        for net, opt in opts.items():  # the config's betas, eps, ... over the checkpoint's
            self.resume_changes += apply_settings(opt, cfgs[net], net)
        self.images_seen = int(state.get("images_seen", 0))
        self.skipped = dict(state.get("amp_skipped_steps", self.skipped))
        self.run_id = state.get("wandb_run_id", "")
        self.wandb_saved = dict(state.get("wandb") or {})
        outputs = state.get("step_outputs")
        if outputs is not None:
            # owed where the run's log is: its own directory, or that directory moved (its
            # metrics.jsonl came along); a checkpoint copied into a new run directory owes it
            # nothing (the step's outputs are the source run's, logged there)
            here = outputs.get("run") == str(self.run_dir.resolve())
            moved = self._agreed(lambda: str(bool(read_metrics(self.run_dir)))) == "True"
            self.pending_outputs = outputs if here or moved else {}
        return found

    def _write_run_config(self) -> None:
        if self.acc.is_main_process:
            (self.run_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG).write_text(dump_yaml(self.cfg))

    def _init_tracker(self) -> None:
        """W&B on the main process; an unreachable server falls back to offline, never stops."""
        self.mode = start_tracker(
            self.acc, self.cfg, self.mode, self.run_id, self.run_dir, self.wandb_saved
        )
        self.wandb_place = place_of(resolve_settings(self.cfg.tracking, saved=self.wandb_saved))

    # ------------------------------------------------------------------ the loop

    def train_step(self) -> dict[str, torch.Tensor]:
        """One outer iteration: n_critic D updates, then one G update."""
        metrics: dict[str, torch.Tensor] = {}
        y = None
        t, inp, s = self.cfg.train, self.inputs, self.step
        logged = _due(t.log_every, s + 1, t.steps)
        for k in range(t.n_critic):
            # Only the last critic update's metrics are kept, and only logged steps read them.
            x, y = inp.batch()
            z, eps = inp.z(s, f"d{k}/z"), inp.eps(s, f"d{k}/eps")
            track = logged and k == t.n_critic - 1
            aug = inp.aug(s, f"d{k}/aug/real"), inp.aug(s, f"d{k}/aug/fake")
            metrics.update(discriminator_step(self.parts, x, y, z, eps, track=track, aug=aug))
            self.skipped["d"] += bool(getattr(self.parts.opt_d, "step_was_skipped", False))
        assert y is not None
        z, aug_g = inp.z(s, "g/z"), inp.aug(s, "g/aug/fake")
        metrics.update(generator_step(self.parts, y, z, track=logged, aug=aug_g))
        self.nonfinite.update(metrics["d/loss"], metrics["g/loss"])
        self.skipped["g"] += bool(getattr(self.parts.opt_g, "step_was_skipped", False))
        if self.ema is not None:
            self.ema.update_parameters(self.parts.G_plain)
        # The learning rates this step ran with (logged), then the next step's (schedules.py).
        self.lr_used = self._learning_rates()
        self._set_rates(s + 1)
        self.step += 1
        self.images_seen += t.batch_size * t.n_critic
        return metrics

    def fit(self, stop: StopRequest | None = None) -> TrainResult:
        """Train to `train.steps`, or until a stop signal; always leave a status file behind.
        `stop`: handlers the caller installed earlier (`gandist train`: before its start-up), so
        a signal during the set-up is acted on after the first step; else installed now."""
        own = stop is None
        stop = StopRequest().install() if stop is None else stop
        try:
            return self._loop(stop)
        except BaseException as exc:
            if self.acc.is_main_process:
                write_status(
                    self.run_dir, "failed", step=self.step, error=f"{type(exc).__name__}: {exc}"
                )
            raise
        finally:
            if own:
                stop.uninstall()
            # free for the next job once this one is done (a notebook that trained a run
            # would hold it for the kernel's life)
            release_run_dir(self.run_dir)

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
            for line in self.resume_changes:
                log.message(line)
        if self.init_from is not None:
            log.message(self.init_from.message)
        if self.lock_note:
            log.message(self.lock_note)
        log.message(self._banner())
        if stop.signal_name is not None and self.step < t.steps:
            log.message(
                f"{stop.signal_name} arrived during start-up: stopping after the first step "
                "(checkpoint, status preempted)"
            )
        lost = self._step_outputs_lost()
        grid_lost = not lost and self._step_grid_lost()
        if self.resumed_from is not None and self.step >= t.steps:
            rescore = "" if lost else f"; `gandist eval {self.run_dir}` scores it"
            log.message(
                f"the checkpoint is at train.steps={t.steps}: nothing left to train (raise "
                f"train.steps to continue{rescore})"
            )
        self.last_ckpt = self.resumed_from
        window_t, window_img = time.perf_counter(), 0
        final_eval: dict[str, float] | None = None
        if lost:
            log.message(
                f"step {self.step}'s evaluation and samples did not finish before the run "
                "stopped (its checkpoint is written first): doing them now"
            )
            due = self.pending_outputs or {}  # what that step had due, and its logged values
            final_eval = self._score_and_sample(
                log,
                self.step,
                dict(due.get("values") or {}),
                final_eval,
                due.get("eval"),
                due.get("samples"),
            )
        elif grid_lost:
            log.message(f"step {self.step}'s sample grid was not written before the run stopped")
            self.write_samples(log)
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
                values = reduce_metrics(self.acc, metrics)
                values.update(self._progress())
                values.update(throughput(window_img / max(elapsed, 1e-9), self.acc.num_processes))
                self._guard()
                window_t, window_img = time.perf_counter(), 0
            if _due(t.checkpoint_every, s) or s == t.steps:
                # before the evaluation and the samples (which leave the training state as it
                # is): a stop or a kill during a long evaluation loses no training, and the
                # step's logged values and what it had due let a resume redo them exactly
                self.last_ckpt = self.save(self._outputs_due(s, values))
            final_eval = self._score_and_sample(log, s, values, final_eval)
            if s < t.steps and self._stop_due(stop):
                preempted = True
                log.message(
                    f"stopping at step {s} on {stop.signal_name}: saving a checkpoint; "
                    "continue with train.resume=auto"
                )
                break
        stop.drain()  # a stop-flag allreduce still in flight (all ranks launched it)
        return self._finish(log, stop, preempted, final_eval)

    def _outputs_due(self, s: int, values: dict[str, float]) -> dict[str, Any]:
        """What step s has due after its checkpoint, and its logged values (trainer_state.json:
        a resume after a kill during them redoes them, whatever the resumed config says)."""
        t = self.cfg.train
        return {
            "run": str(self.run_dir.resolve()),
            "values": dict(values),
            "eval": _due(self.cfg.eval.every, s) or s == t.steps,
            "samples": _due(t.sample_every, s, t.steps),
        }

    def _score_and_sample(
        self,
        log: RunLog,
        s: int,
        values: dict[str, float],
        final_eval: dict[str, float] | None,
        eval_due: bool | None = None,
        samples_due: bool | None = None,
    ) -> dict[str, float] | None:
        """What follows step s's checkpoint: its evaluation (eval.every, the last step), its
        metrics row (`values` plus the scores) and its sample grid (None: due by the config).
        Returns the final scores."""
        t, cfg = self.cfg.train, self.cfg
        if eval_due is None:
            eval_due = _due(cfg.eval.every, s) or s == t.steps
        if samples_due is None:
            samples_due = _due(t.sample_every, s, t.steps)
        if eval_due:
            scores = self.evaluate(log)
            if scores is not None:
                values.update({f"eval/{k}": v for k, v in scores.items()})
                final_eval = scores if s == t.steps else final_eval
            if s == t.steps and cfg.eval.rejection > 0:
                final_eval = self._final_rejection_eval(log, values, final_eval)
        if values:
            log.scalars(s, values)
        if samples_due:
            self.write_samples(log)
        return final_eval

    def _step_outputs_lost(self) -> bool:
        """Whether the run resumed from a checkpoint whose step's metrics row was never written:
        the stop came during its evaluation or samples (the checkpoint precedes them). What was
        due is the checkpoint's record (a changed eval.every does not hide it); a checkpoint
        without one (older gandist): an evaluation step by this config. The main process reads
        metrics.jsonl; every rank agrees, since evaluating is a collective."""
        s, t = self.step, self.cfg.train
        if self.resumed_from is None:
            return False
        due = self.pending_outputs
        if due is not None:
            if not (due.get("values") or due.get("eval") or due.get("samples")):
                return False
        elif not (_due(self.cfg.eval.every, s) or s == t.steps):
            return False
        lost = self._agreed(
            lambda: str(all(row.get("step") != s for row in read_metrics(self.run_dir)))
        )
        return lost == "True"

    def _step_grid_lost(self) -> bool:
        """Whether the resumed step's sample grid is due and missing while its metrics row was
        written: a kill while the grid was being written (the row comes first). Due: the
        checkpoint's record, else by this config."""
        if self.resumed_from is None:
            return False
        due = self.pending_outputs
        t = self.cfg.train
        if not (
            due.get("samples") if due is not None else _due(t.sample_every, self.step, t.steps)
        ):
            return False
        return self._agreed(lambda: str(not self._grid_path().exists())) == "True"

    def _grid_path(self) -> Path:
        return self.run_dir / SAMPLES_DIR / f"step_{self.step:06d}.png"

    def _finish(
        self,
        log: RunLog,
        stop: StopRequest,
        preempted: bool,
        final_eval: dict[str, float] | None,
    ) -> TrainResult:
        """Last checkpoint, status.json, local pictures, eval.json, the W&B model, the summary."""
        acc = self.acc
        psi = self.cfg.eval.truncation
        if final_eval is not None and psi != 1.0:  # truncated scores say so, as gandist eval's
            final_eval = {**final_eval, "truncation": psi}
        if stop.signal_name is not None and not preempted:  # came during the last step's work
            log.message(f"{stop.signal_name} arrived after the last step: the run is complete")
        if self.last_ckpt is None or ckpt.checkpoint_step(self.last_ckpt) != self.step:
            self.last_ckpt = self.save()
        if acc.is_main_process:
            run = None if self.mode == "disabled" else acc.get_tracker("wandb", unwrap=True)
            record_end(
                self.run_dir,
                preempted=preempted,
                step=self.step,
                steps=self.cfg.train.steps,
                checkpoint=self.last_ckpt,
                signal=stop.signal_name,
                final_eval=final_eval,
                wandb_run=run,
                stream=self.stream,
                ema=self.ema is not None,
            )
        log.close()
        wandb_dir = wandb_local_dir(acc, self.mode)
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
            stopped_of = self.cfg.train.steps if preempted else 0
            text = summary(
                r.step, r.run_dir, r.samples_dir, r.checkpoint, r.wandb_dir, self.mode, stopped_of
            )
            print(text, flush=True)
        return result

    # ------------------------------------------------------------------ helpers

    def _progress(self) -> dict[str, float]:
        st = self.stream
        return progress(
            st.epoch + st.position / st.batches_per_epoch,
            self.images_seen,
            self.lr_used,
            self.acc.scaler,
            self.skipped,
        )

    def _set_rates(self, step: int) -> None:
        """Both networks' learning rates for `step` (training/schedules.py)."""
        set_rates_at(
            step,
            {"g": self.parts.opt_g, "d": self.parts.opt_d},
            {"g": self.cfg.optim.g, "d": self.cfg.optim.d},
            self.cfg.train.steps,
        )

    def _learning_rates(self) -> tuple[float, float]:
        return (
            self.parts.opt_g.param_groups[0]["lr"],
            self.parts.opt_d.param_groups[0]["lr"],
        )

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
        if self.ema is None:
            return self.parts.G_plain
        lt, seed = self.parts.label_type, derive_seed(self.cfg.train.seed, "norm-stats")
        return self.ema.for_sampling(lt, self.info.num_labels if lt != "none" else 0, seed)

    def write_samples(self, log: RunLog | None = None) -> Path | None:
        """Fixed-input grid (or scatter) from the unwrapped G; every rank syncs buffers first."""
        self._sync_buffers()
        if not self.acc.is_main_process:
            return None
        path = render_samples(
            self.generator_for_samples(),
            self.fixed,
            self.stream,
            self._grid_path(),
            f"{self.cfg.name} step {self.step}",
            self.acc.device,
            self.dtype,
        )
        if log is not None:
            log.image(self.step, "samples", path, caption=f"step {self.step}")
        return path

    def evaluate(
        self, log: RunLog | None = None, rejection: bool = False
    ) -> dict[str, float] | None:
        """The run's metrics (see samples.Scorer); every rank calls it. `rejection`: through
        discriminator rejection sampling with the critic (eval.rejection)."""
        self._sync_buffers()
        critic = self.parts.D_plain if rejection else None
        say = log.message if log else lambda _: None
        return self.scorer(self.generator_for_samples(), say, critic)

    def _final_rejection_eval(
        self, log: RunLog, values: dict[str, float], plain: dict[str, float] | None
    ) -> dict[str, float] | None:
        """eval.rejection: the final scores again with rejection sampling, logged as
        eval_rejection/* beside the plain eval/*; eval.json gets them, with the plain ones as
        without_rejection/*, so both stay on record."""
        scores = self.evaluate(log, rejection=True)
        if scores is None:
            return plain
        values.update({f"eval_rejection/{k}": v for k, v in scores.items()})
        return {**scores, **{f"without_rejection/{k}": v for k, v in (plain or {}).items()}}

    def trainer_state(self, outputs: dict[str, Any] | None = None) -> dict[str, Any]:
        return ckpt.trainer_state(
            step=self.step,
            data=self.stream.state_dict(),
            images_seen=self.images_seen,
            amp_skipped_steps=self.skipped,
            wandb_run_id=self.run_id,
            wandb_place=self.wandb_place,
            ema_n_averaged=int(self.ema.n_averaged.item()) if self.ema is not None else 0,
            world_size=self.acc.num_processes,
            config_name=self.cfg.name,
            info=self.info,
            step_outputs=outputs,
        )

    def save(self, outputs: dict[str, Any] | None = None) -> Path:
        """A checkpoint of this step; `outputs`: what the step still has due (_outputs_due)."""
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
            self.trainer_state(outputs),
            dump_yaml(self.cfg),
            self.cfg.train.keep_checkpoints,
        )

    def _banner(self) -> str:
        backend = self.acc.state.dynamo_plugin.backend.value.lower()
        return banner(
            self.cfg,
            self.info,
            self.stream.num_samples,
            self.acc.num_processes,
            self.acc.device.type,
            self.run_dir,
            compiled=backend if is_compiled_module(self.parts.G) else "",
        )


def train(cfg: Config, stop: StopRequest | None = None) -> TrainResult:
    """`stop`: stop-signal handlers installed before the set-up (see Trainer.fit)."""
    return Trainer(cfg).fit(stop)
