"""`gandist report <run>`: one self-contained HTML page (images inlined) for a run."""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from gandist.run_files import (
    CHECKPOINTS_DIR,
    CONFIG,
    EVAL,
    TRAINER_STATE,
    read_metrics,
    read_status,
)
from gandist.tracking.plots import make_gif, plot_losses, sample_frames

MAX_GRIDS = 12


def _img(path: Path, alt: str, mime: str = "image/png") -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _table(values: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in values.items()
    )
    return f"<table>{rows}</table>"


def _fmt(v: object) -> str:
    return f"{v:.5g}" if isinstance(v, float) else str(v)


def _pick(frames: list[Path], n: int) -> list[Path]:
    if len(frames) <= n:
        return frames
    idx = sorted({round(i * (len(frames) - 1) / (n - 1)) for i in range(n)})
    return [frames[i] for i in idx]


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Config, status, curves, sample grids over time and metrics of a finished or running run."""
    run = Path(run_dir)
    if (run / TRAINER_STATE).is_file() and run.parent.name == CHECKPOINTS_DIR:
        run = run.parent.parent  # a checkpoint's run (a checkpoint has a config.yaml too)
    if not (run / CONFIG).is_file():
        raise FileNotFoundError(f"{run}: not a gandist run directory (no config.yaml)")
    out = Path(out or run / "report.html")
    parts = [f"<h1>gandist run: {html.escape(run.name)}</h1>"]
    status = read_status(run)
    if status:
        status = {k: v for k, v in status.items() if v is not None}  # "signal None"
        if isinstance(status.get("checkpoint"), str):  # where it is now: runs get moved
            status["checkpoint"] = str(run / CHECKPOINTS_DIR / Path(status["checkpoint"]).name)
        if isinstance(status.get("time"), (int, float)):
            status = {
                **status,
                "time": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["time"])),
            }
        parts.append("<h2>Status</h2>" + _table(status))
    else:
        parts.append("<h2>Status</h2><p>running (no status.json yet)</p>")
    rows = read_metrics(run)
    if rows:
        parts.append(f"<h2>Latest metrics (step {rows[-1]['step']})</h2>" + _table(rows[-1]))
    if (run / EVAL).is_file():
        parts.append("<h2>Evaluation</h2>" + _table(json.loads((run / EVAL).read_text())))
    curves = plot_losses(run)
    if curves is not None:
        parts.append("<h2>Curves</h2>" + _img(curves, "loss curves"))
    frames = sample_frames(run)
    if frames:
        cells = "".join(
            f"<figure>{_img(f, f.stem)}<figcaption>{html.escape(f.stem)}</figcaption></figure>"
            for f in _pick(frames, MAX_GRIDS)
        )
        parts.append(
            f'<h2>Samples over time ({len(frames)} grids)</h2><div class="grids">{cells}</div>'
        )
        gif = make_gif(run)
        if gif is not None:
            parts.append("<h2>Training animation</h2>" + _img(gif, "training", "image/gif"))
    parts.append("<h2>Config</h2><pre>" + html.escape((run / CONFIG).read_text()) + "</pre>")
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse}td{border:1px solid #ccc;padding:2px 8px}"
        ".grids{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}"
        "img{max-width:100%}pre{background:#f5f5f5;padding:1em}"
    )
    out.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(run.name)}"
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
    return out
