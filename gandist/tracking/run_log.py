"""Where a run's numbers go: `metrics.jsonl`, the W&B tracker, and a progress display.

Only the main process writes. Collectives (reducing metrics over ranks) happen in the trainer
before it calls in here, so nothing in this module can hang a multi-process run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from accelerate import Accelerator
from tqdm.auto import tqdm

from gandist.run_files import METRICS


def truncate_metrics(path: Path, last_step: int) -> float:
    """Drop lines logged after `last_step` so a resumed run never logs a step twice; the last
    kept line's `time` (0 when none), where a resumed run's clock carries on."""
    if not path.is_file():
        return 0.0
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    keep = [r for r in rows if r.get("step", 0) <= last_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return float(keep[-1].get("time", 0.0)) if keep else 0.0


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class RunLog:
    def __init__(
        self,
        accelerator: Accelerator,
        run_dir: Path,
        total_steps: int,
        start_step: int,
        use_tracker: bool,
        interactive: bool | None = None,
    ) -> None:
        self.acc = accelerator
        self.main = accelerator.is_main_process
        self.path = Path(run_dir) / METRICS
        self.use_tracker = use_tracker
        self.total = total_steps
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar = None
        self._t0 = time.time()
        if self.main:
            # `time`: training seconds, carried across a resume (it restarted at 0)
            self._t0 -= truncate_metrics(self.path, start_step)
            if self.interactive:
                self.bar = tqdm(
                    total=total_steps,
                    initial=start_step,
                    unit="step",
                    dynamic_ncols=True,
                    desc="train",
                )

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.main:
            return
        with open(self.path, "a") as fh:
            fh.write(
                json.dumps({"step": step, "time": round(time.time() - self._t0, 3), **values})
                + "\n"
            )
        if self.use_tracker:
            self.acc.log(values, step=step)
        if "d/loss" not in values:  # an evaluation between log steps: say what it measured
            shown = {k[5:]: v for k, v in values.items() if k.startswith("eval/")}
            text = "  ".join(f"{k} {_fmt(v)}" for k, v in list(shown.items())[:6])
            self.message(f"step {step}/{self.total}  eval: {text}")
            return
        if self.bar is not None:
            self.bar.set_postfix(
                d_loss=_fmt(values["d/loss"]),
                g_loss=_fmt(values.get("g/loss", float("nan"))),
                img_s=_fmt(values.get("perf/img_per_s", 0.0)),
            )
        else:
            elapsed = time.time() - self._t0
            print(
                f"step {step}/{self.total}  d_loss {_fmt(values['d/loss'])}  "
                f"g_loss {_fmt(values.get('g/loss', float('nan')))}  "
                f"img/s {_fmt(values.get('perf/img_per_s', 0.0))}  elapsed {elapsed:.0f}s",
                flush=True,
            )

    def image(self, step: int, key: str, path: Path, caption: str = "") -> None:
        if not (self.main and self.use_tracker):
            return
        import wandb

        self.acc.log({key: wandb.Image(str(path), caption=caption or path.name)}, step=step)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def message(self, text: str) -> None:
        if not self.main:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
