"""`gandist shard`: any image source -> WebDataset tar shards plus a `dataset.json` manifest.

The format itself lives in `gandist.data.shards.format`; the steps in the modules beside this
one (plan, labels, encode, tasks, workers, report); this module runs them, one directory at a time:

- Partition: shard i holds source indices [i*S, (i+1)*S) (minus skipped ones), so a re-run
  produces the same keys in the same shards, byte for byte (tar members have mtime 0, uid/gid 0,
  a fixed order), and any shard can be rebuilt on its own.
- Atomic and resumable: a shard is written as `.<name>.tmp-<pid>`, its sidecar
  `.<name>.stats.json` (counts, sha256, a fingerprint of what the shard should hold) is written
  next, and only then the tar is renamed to its final name. A re-run reuses every shard whose tar
  and matching sidecar exist, and writes the manifest last, so a directory with a manifest is
  always complete.
- Bad input is converted or skipped, counted per reason (`REASONS`) with the first few paths;
  `strict=True` turns the first one into a ValueError.
- Parts: `part=(k, n)` writes only shards i with i % n == k, so n processes (a SLURM job array,
  slurm/shard.sh) can fill one directory; whichever part finds every shard complete writes the
  manifest, under a lock, so n parts leave the same files as one run.
"""

from __future__ import annotations

import fcntl
import math
import re
from pathlib import Path

from PIL import Image

from gandist import __version__
from gandist.config import DataConfig
from gandist.data.shards.encode import DEFAULT_SHARD_SIZE, Job, Reader, samples_per_shard
from gandist.data.shards.format import (
    IMAGE_FORMATS,
    MANIFEST,
    SHARD_PATTERN,
    Manifest,
    ShardEntry,
    write_manifest,
)
from gandist.data.shards.plan import Plan, folder_root, load_images, make_plan, source_config
from gandist.data.shards.report import (
    CONVERT_REASONS,
    SKIP_REASONS,
    Issues,
    ShardReport,
    strict_error,
)
from gandist.data.shards.tasks import ShardStats, Task, make_tasks, reusable
from gandist.data.shards.workers import Progress, run_tasks

_BYTE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}  # fmt: skip


def parse_bytes(text: str | int) -> int:
    """'256MB' -> 256_000_000. KB/MB/GB (and K/M/G) are decimal (base 1000), KiB/MiB/GiB binary
    (base 1024), a bare number is bytes; decimal matches what object stores and `ls -h --si`
    report, and the binary suffixes are there for whoever thinks in those."""
    if isinstance(text, int):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
        if not match or match.group(2).lower() not in _BYTE_UNITS:
            raise ValueError(
                f"--shard-bytes: cannot read {text!r}; use e.g. 256MB, 1.5GB, 512MiB or 1000000"
            )
        value, unit = float(match.group(1)), match.group(2).lower()
    size = int(value * _BYTE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"--shard-bytes must be positive, got {text!r}")
    return size


_SHARD_NAME = re.escape(SHARD_PATTERN).replace(r"\{:06d\}", r"(\d+)")
_TEMP_FILE = re.compile(
    rf"\.(?:{_SHARD_NAME}(?:\.stats\.json)?|{re.escape(MANIFEST)})\.tmp(?:-\d+)?"
)
_OUR_FILE = re.compile(rf"\.?{_SHARD_NAME}(?:\.stats\.json)?")


def _clean_out_dir(out_dir: Path, num_shards: int) -> None:
    """Before a run: no manifest (it is written last, so its absence marks an unfinished run),
    no temporaries of crashed runs, no shards (or sidecars) beyond this run's count. Files that
    are not ours are left alone. One run per directory at a time."""
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for path in out_dir.iterdir():
        ours = _OUR_FILE.fullmatch(path.name)
        stale = _TEMP_FILE.fullmatch(path.name) or (ours and int(ours.group(1)) >= num_shards)
        if stale and path.is_file():
            path.unlink()


# ---------------------------------------------------------------- entry point


def write_shards(
    source: str,
    out_dir: Path,
    *,
    image_size: int = 0,
    channels: int = 0,
    shard_size: int = 0,
    shard_bytes: int = 0,
    image_format: str = "png",
    workers: int = 1,
    strict: bool = False,
    labels_file: str | None = None,
    objects_file: str | None = None,
    data_cfg: DataConfig | None = None,
    progress: bool = True,
    min_shards: int = 0,
    part: tuple[int, int] | None = None,
) -> ShardReport:
    """Write `source` (any image `data.source`) as tar shards plus `dataset.json` under `out_dir`.

    `data_cfg` supplies root/download/n_samples/seed; `source`, `image_size` and `channels`
    override it. Shards hold `shard_size` samples, or as many as fit `shard_bytes`, or 1000;
    `min_shards` caps the size so that small data sets still split over processes x workers.
    A re-run with the same inputs reuses complete shards. Raises ValueError for bad arguments,
    an empty folder or (strict) the first bad input file.

    `part=(k, n)`: write only shards i with i % n == k (one of n concurrent writers with the same
    arguments); the part that finds every shard complete writes the manifest and returns a
    report of the whole directory, the others a report of their own shards with complete=False.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"--format: {image_format!r} is not one of {', '.join(IMAGE_FORMATS)}")
    if shard_size and shard_bytes:
        raise ValueError("give --shard-size or --shard-bytes, not both")
    if shard_size < 0 or shard_bytes < 0 or workers < 0:
        raise ValueError("--shard-size, --shard-bytes and --workers must not be negative")
    if part is not None and not 0 <= part[0] < part[1]:
        raise ValueError(f"part (k, n) needs 0 <= k < n, got {part}")
    cfg = source_config(source, image_size, channels, data_cfg)
    src = load_images(cfg, quiet=labels_file is not None)
    plan = make_plan(src, cfg, labels_file, objects_file)
    if strict and (first := plan.issues.first()):
        raise strict_error(*first)
    out_dir = Path(out_dir)
    job = Job(
        cfg=cfg,
        out_dir=str(out_dir),
        image_format=image_format,
        strict=strict,
        label_type=plan.label_type,
        num_labels=len(plan.label_names),
        channels=src.info.channels,
        image_size=src.info.image_size,
        folder=folder_root(cfg) is not None,
        max_image_pixels=Image.MAX_IMAGE_PIXELS,
    )
    reader = Reader(job, src)
    per_shard = shard_size or (
        samples_per_shard(plan, reader, job, shard_bytes) if shard_bytes else DEFAULT_SHARD_SIZE
    )
    if min_shards > 0:
        per_shard = max(1, min(per_shard, math.ceil(len(plan.items) / min_shards)))
    tasks = make_tasks(plan, per_shard, job)
    out_dir.mkdir(parents=True, exist_ok=True)
    if part is not None:
        return _write_part(tasks, part, plan, job, reader, workers, progress)
    _clean_out_dir(out_dir, len(tasks))
    stats, reused = _write_all(tasks, job, reader, workers, progress)
    return _finish(out_dir, stats, reused, plan, job)


_PART_LOCK = f".{MANIFEST}.lock"


def _write_part(
    tasks: list[Task],
    part: tuple[int, int],
    plan: Plan,
    job: Job,
    reader: Reader,
    workers: int,
    progress: bool,
) -> ShardReport:
    """Part k of n: write shards i % n == k, then, under a lock, finish the directory if every
    shard is complete. Each part removes the manifest before touching a shard (a directory with
    a manifest stays complete) and only its own temporaries (the other parts may be writing)."""
    k, n = part
    out_dir = Path(job.out_dir)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for path in out_dir.iterdir():
        temp = _TEMP_FILE.fullmatch(path.name)
        if temp and temp.group(1) is not None and int(temp.group(1)) % n == k and path.is_file():
            path.unlink()
    mine = [t for t in tasks if t.index % n == k]
    stats, reused = _write_all(mine, job, reader, workers, progress)
    with open(out_dir / _PART_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one finisher at a time (shared manifest temp file)
        everything = [reusable(out_dir, t) for t in tasks]
        if all(s is not None for s in everything):
            # Every shard complete: no part is writing any more, so the full clean is safe.
            _clean_out_dir(out_dir, len(tasks))
            whole = [s for s in everything if s is not None]
            report = _finish(out_dir, whole, reused, plan, job)
            report.part = part
            return report
    report = _report(out_dir, stats, reused, Issues())
    report.part, report.complete = part, False
    return report


def _write_all(
    tasks: list[Task], job: Job, reader: Reader, workers: int, progress: bool
) -> tuple[list[ShardStats], int]:
    """Reuse complete shards, write the rest: stats in shard order, and how many non-empty shards
    were reused."""
    bar = Progress(sum(len(t.items) for t in tasks), len(tasks), progress)
    done: dict[str, ShardStats] = {}
    pending = []
    for task in tasks:
        old = reusable(Path(job.out_dir), task)
        if old is None:
            pending.append(task)
        else:
            done[task.name] = old
            bar.shard(len(task.items))
    reused = sum(1 for s in done.values() if s.num_samples)
    try:
        for stats in run_tasks(pending, job, reader, workers, bar):
            done[stats.name] = stats
    finally:
        bar.close()
    return [done[t.name] for t in tasks], reused


def _report(out_dir: Path, stats: list[ShardStats], reused: int, issues: Issues) -> ShardReport:
    """Totals over shard stats; `issues` may already hold plan-level findings."""
    for s in stats:
        issues.merge(s.issues)
    written = [s for s in stats if s.num_samples]
    return ShardReport(
        out_dir=out_dir,
        manifest=out_dir / MANIFEST,
        num_samples=sum(s.num_samples for s in written),
        num_shards=len(written),
        skipped=issues.of(SKIP_REASONS),
        examples=issues.examples,
        shards_reused=reused,
        converted=issues.of(CONVERT_REASONS),
    )


def _finish(
    out_dir: Path, stats: list[ShardStats], reused: int, plan: Plan, job: Job
) -> ShardReport:
    """Total the issues, write the manifest (last), build the report."""
    issues = Issues()
    issues.merge(plan.issues)
    report = _report(out_dir, stats, reused, issues)
    written = [s for s in stats if s.num_samples]
    if not written:
        raise ValueError(
            f"gandist shard: no usable samples in {job.cfg.source}\n{report.summary()}"
        )
    manifest = Manifest(
        source=job.cfg.source,
        image_size=job.image_size,
        channels=job.channels,
        image_format=job.image_format,
        label_type=plan.label_type,
        label_names=list(plan.label_names),
        shards=[ShardEntry(s.name, s.num_samples, s.sha256, s.num_bytes) for s in written],
        gandist_version=__version__,
        skipped=report.skipped,
    )
    write_manifest(out_dir, manifest)
    return report
