"""`gandist` command line: each subcommand calls one function of the package."""

from __future__ import annotations

import argparse
import os
import sys

from gandist import __version__
from gandist.config import WANDB_MODES, ConfigError, dump_yaml, load_config


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    from accelerate import PartialState

    from gandist.run_files import EXIT_PREEMPTED
    from gandist.training.trainer import train

    preempted = train(cfg).preempted
    PartialState().destroy_process_group()
    if not preempted:
        return 0
    return 0 if _agent_restarts_failures() else EXIT_PREEMPTED


def _agent_restarts_failures(env: dict[str, str] | None = None) -> bool:
    """Whether an elastic agent restarts this worker's group when it exits non-zero: torchrun and
    `accelerate launch` with --max-restarts N > 0 give their workers TORCHELASTIC_MAX_RESTARTS=N.

    A run stopped with a checkpoint then exits 0, not 75: the agent would take 75 for a crash and
    start the group again in the middle of its preemption. status.json says "preempted" either
    way, and that is what the launch scripts (slurm/train.sh, k8s/) read.
    """
    value = (os.environ if env is None else env).get("TORCHELASTIC_MAX_RESTARTS", "0")
    return value.strip().isdigit() and int(value) > 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from gandist.sampling import sample

    out = sample(
        args.path, args.n, args.out, labels=args.labels, seed=args.seed, use_ema=not args.no_ema
    )
    print(out)
    return 0


def _add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Flags that pick out a data source's samples (shared by shard and train-evaluator)."""
    p.add_argument("--root", default="data", help="data root (default data)")
    p.add_argument("--download", action="store_true", help="torchvision: download if missing")
    p.add_argument("--n-samples", type=int, default=0, help="generated sources: how many")
    p.add_argument("--seed", type=int, default=0, help="generated sources: seed")


def _source_config(args: argparse.Namespace, **fields: object):
    from gandist.config import DataConfig

    return DataConfig(
        root=args.root, download=args.download, n_samples=args.n_samples, seed=args.seed, **fields
    )


def _cmd_shard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gandist.data.shards.write import write_shards

    report = write_shards(
        args.source,
        Path(args.out_dir),
        image_size=args.image_size,
        channels=args.channels,
        shard_size=args.shard_size,
        shard_bytes=args.shard_bytes,
        image_format=args.format,
        workers=args.workers,
        strict=args.strict,
        labels_file=args.labels,
        objects_file=args.objects,
        data_cfg=_source_config(args),
    )
    print(report.summary())
    print(report.manifest)
    return 0


def _byte_size(text: str) -> int:
    """argparse type for --shard-bytes; imported lazily so `gandist --help` stays light."""
    from gandist.data.shards.write import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_shard_parser(sub: argparse._SubParsersAction) -> None:
    h = sub.add_parser(
        "shard",
        help="write an image source as WebDataset tar shards plus a dataset.json manifest "
        "(resumable: a re-run reuses complete shards)",
    )
    h.add_argument("source", help="digits | shapes | folder:<path> | torchvision:<Name>")
    h.add_argument("out_dir", help="directory for data-NNNNNN.tar and dataset.json")
    size = h.add_mutually_exclusive_group()
    size.add_argument("--shard-size", type=int, default=0, help="samples per shard (default 1000)")
    size.add_argument(
        "--shard-bytes",
        type=_byte_size,
        default=0,
        help="target shard size, e.g. 256MB (KB/MB/GB = 1000^n, KiB/MiB/GiB = 1024^n)",
    )
    h.add_argument("--image-size", type=int, default=0, help="square side (default: native)")
    h.add_argument("--channels", type=int, choices=(1, 3), default=0, help="default: native")
    h.add_argument("--format", default="png", help="png (default) | jpg | npy")
    h.add_argument("--workers", type=int, default=1, help="processes writing shards")
    h.add_argument("--strict", action="store_true", help="any bad input file is an error")
    h.add_argument(
        "--labels",
        default=None,
        help="folder sources: CSV `filename,label` or JSON {name: label | [labels]}",
    )
    h.add_argument("--objects", default=None, help="label vocabulary: JSON list or {name: index}")
    _add_source_arguments(h)
    h.set_defaults(func=_cmd_shard)
    h.epilog = "Shards written by another tool (webdataset.ShardWriter): gandist shard index <dir>"

    i = sub.add_parser(
        SHARD_INDEX,  # typed as two words; main() joins them (`shard <source>` keeps working)
        help="describe existing WebDataset shards (e.g. webdataset.ShardWriter's .jpg + .cls) "
        "in a dataset.json: sample counts, image size and channels, labels; one pass",
    )
    i.add_argument(
        "shards",
        help="directory | brace pattern (shard-{000000..000099}.tar) | comma list; pipe: URLs too",
    )
    i.add_argument(
        "--out",
        default=None,
        help="where to write dataset.json (default: beside the shards; remote shards need it, "
        "then train with data.manifest=<it>)",
    )
    i.add_argument("--workers", type=int, default=4, help="shards read at once (default 4)")
    i.add_argument(
        "--force", action="store_true", help="replace a dataset.json written by `gandist shard`"
    )
    i.set_defaults(func=_cmd_shard_index)


SHARD_INDEX = "shard index"


def _cmd_shard_index(args: argparse.Namespace) -> int:
    from gandist.data.shards.index import run_index_command

    print(run_index_command(args.shards, args.out, args.workers, args.force))
    return 0


def _cmd_sefa(args: argparse.Namespace) -> int:
    from gandist.evaluation.sefa import run_sefa

    for path in run_sefa(
        args.path,
        args.k,
        args.out,
        n=args.n,
        steps=args.steps,
        distance=args.distance,
        seed=args.seed,
        use_ema=not args.no_ema,
        wandb_mode=args.wandb,
    ):
        print(path)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from gandist.evaluation.run_eval import evaluate_checkpoint, format_scores

    overrides = list(args.overrides)
    if args.n:
        overrides.append(f"eval.n_samples={args.n}")
    if args.extractor:
        overrides.append(f"eval.extractor={args.extractor}")
    if args.evaluator:
        overrides.append(f"eval.evaluator={args.evaluator}")
    record, path = evaluate_checkpoint(
        args.path, overrides, use_ema=not args.no_ema, wandb_mode=args.wandb, out=args.out
    )
    if path is not None:
        print(
            f"step {record['step']}, {record['n_samples']} samples, {record['extractor']} "
            f"features, {record['seconds']:.1f} s:"
        )
        print(format_scores(record))
        print(path)
    return 0


def _cmd_train_evaluator(args: argparse.Namespace) -> int:
    from gandist.evaluation.train_evaluator import train_evaluator

    data = _source_config(
        args, source=args.source, image_size=args.image_size, channels=args.channels
    )
    out, spec = train_evaluator(
        data, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr
    )
    scores = ", ".join(f"{k} {v:.4f}" for k, v in spec.heldout.items() if k != "samples")
    print(f"held-out ({int(spec.heldout['samples'])} samples): {scores}")
    print(out)
    return 0


def _add_eval_parsers(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "eval",
        help="score a run or checkpoint: FID, KID, precision/recall, density/coverage, "
        "conditional accuracy (images) or mode metrics (2-D); works under torchrun too",
    )
    e.add_argument("path", help="run directory (latest checkpoint) or checkpoint directory")
    e.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. eval.nearest_k=3")
    e.add_argument("--n", type=int, default=0, help="samples (default: the run's eval.n_samples)")
    e.add_argument("--extractor", choices=("domain", "inception"), default=None)
    e.add_argument("--evaluator", default=None, help="evaluator directory (domain extractor)")
    e.add_argument("--out", default=None, help="JSON path (default <run>/evals/step_N-X.json)")
    e.add_argument(
        "--wandb",
        choices=WANDB_MODES,
        default="",
        help="W&B mode for the eval run (default: the run's tracking.wandb)",
    )
    e.add_argument("--no-ema", action="store_true", help="use the raw generator, not the EMA")
    e.set_defaults(func=_cmd_eval)

    v = sub.add_parser(
        "train-evaluator",
        help="train the domain evaluator (a small classifier) of a labelled image data set",
    )
    v.add_argument("source", help="digits | shapes | folder:<path> | torchvision:<Name>")
    v.add_argument("--image-size", type=int, default=0, help="as the run's data.image_size")
    v.add_argument("--channels", type=int, choices=(1, 3), default=0)
    _add_source_arguments(v)
    v.add_argument("--epochs", type=int, default=0, help="default: about 1000 batches")
    v.add_argument("--batch-size", type=int, default=64)
    v.add_argument("--lr", type=float, default=3e-3)
    v.add_argument(
        "--out", default=None, help="directory (default <root>/evaluators/<data set key>)"
    )
    v.set_defaults(func=_cmd_train_evaluator)


def _cmd_report(args: argparse.Namespace) -> int:
    from gandist.tracking.report import write_report

    print(write_report(args.run, args.out))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    print(dump_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def _add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    """`gandist sweep`; the logic (gandist/sweep.py, sweep_runs.py) is imported only when called."""

    def run(args: argparse.Namespace) -> int:
        from gandist.sweep_runs import run_sweep

        return run_sweep(
            args.sweep,
            args.overrides,
            list_points=args.list,
            count=args.count,
            index=args.index,
            dry_run=args.dry_run,
            max_parallel=args.max_parallel,
        )

    w = sub.add_parser(
        "sweep",
        help="train every point of a grid of overrides (a sweep file), or one point with "
        "--index (what each SLURM array task of slurm/sweep.sh runs)",
    )
    w.add_argument("sweep", help="sweep file, e.g. configs/sweeps/wgan_digits.yaml")
    w.add_argument(
        "overrides", nargs="*", help="more dotted overrides for every point (not grid keys)"
    )
    show = w.add_mutually_exclusive_group()
    show.add_argument("--list", action="store_true", help="print the index table and exit")
    show.add_argument("--count", action="store_true", help="print the number of points")
    w.add_argument(
        "--index", type=int, default=None, metavar="I", help="train only grid point I, here"
    )
    w.add_argument(
        "--dry-run", action="store_true", help="print the `gandist train` commands; train nothing"
    )
    w.add_argument(
        "--max-parallel",
        type=int,
        metavar="N",
        default=None,
        help="without --index: points trained at once, each its own process (default 1); "
        "CUDA_VISIBLE_DEVICES devices are dealt to them",
    )
    w.set_defaults(func=run)


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    """`gandist export`; the logic lives in gandist/export.py, imported only when called."""

    def run(args: argparse.Namespace) -> int:
        from gandist.export import export_generator

        out, meta = export_generator(args.path, args.format, args.out, use_ema=not args.no_ema)
        inputs = ", ".join(meta["inputs"])
        print(
            f"{out}: {args.format} generator ({meta['weights']} weights, step {meta['step']}); "
            f"inputs {inputs}; output {meta['output_shape']}"
        )
        return 0

    x = sub.add_parser(
        "export",
        help="write a run's generator as TorchScript or ONNX, loadable without gandist "
        "(EMA weights when the run has them)",
    )
    x.add_argument("path", help="run directory (latest checkpoint) or checkpoint directory")
    x.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    x.add_argument("--out", required=True, help="file to write, e.g. generator.pt / .onnx")
    x.add_argument("--no-ema", action="store_true", help="export the raw generator, not the EMA")
    x.set_defaults(func=run)


def _add_experiments_parsers(sub: argparse._SubParsersAction) -> None:
    """`gandist experiments run|table`; the logic lives in gandist/experiments.py."""
    from pathlib import Path

    def run(args: argparse.Namespace) -> int:
        from gandist.experiments import run_experiment

        failed = run_experiment(args.configs, args.out, args.overrides, args.only, args.threads)
        return 1 if failed else 0

    def table(args: argparse.Namespace) -> int:
        from gandist.experiments import render

        epochs = [int(e) for e in args.epochs.split(",") if e.strip()]
        print(render(args.runs, args.kind, args.losses, epochs, args.curve), end="")
        return 0

    r = sub.add_parser(
        EXPERIMENTS_RUN, help="train every config of an experiment directory, one after another"
    )
    r.add_argument("configs", type=Path, help="e.g. configs/experiments/toy2d_optimizers")
    r.add_argument("overrides", nargs="*", help="dotted overrides for every run")
    r.add_argument("--out", type=Path, default=Path("runs/experiments"))
    r.add_argument("--only", nargs="*", default=[], help="config stems to run (default all)")
    r.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for each run")
    r.set_defaults(func=run)
    t = sub.add_parser(EXPERIMENTS_TABLE, help="print an experiment's results as Markdown")
    t.add_argument("runs", type=Path, help="e.g. runs/experiments/toy2d_optimizers")
    t.add_argument("--kind", choices=("auto", "toy", "image"), default="auto")
    t.add_argument("--losses", action="store_true", help="per-epoch d/g loss table per run")
    t.add_argument("--epochs", default="", help="loss-table columns, e.g. 1,5,10,30")
    t.add_argument(
        "--curve",
        action="append",
        default=[],
        help="a logged metric to tabulate per epoch, e.g. eval/modes_captured (repeatable)",
    )
    t.set_defaults(func=table)


EXPERIMENTS_RUN = "experiments run"
EXPERIMENTS_TABLE = "experiments table"
# Subcommands typed as two words; main() joins them before parsing.
TWO_WORDS = (SHARD_INDEX, EXPERIMENTS_RUN, EXPERIMENTS_TABLE)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gandist", description=__doc__)
    p.add_argument("--version", action="version", version=f"gandist {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a GAN from a YAML config (launch with accelerate "
        "launch or torchrun for several processes)",
    )
    t.add_argument("config", help="YAML config, e.g. configs/dcgan_digits.yaml")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.d.lr=1e-4")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="write samples from a run or checkpoint directory")
    s.add_argument("path", help="run directory (uses its latest checkpoint) or checkpoint dir")
    s.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument(
        "--out",
        default="samples.png",
        help="output .png grid (scatter for 2-D models) or .npy array",
    )
    s.add_argument(
        "--labels",
        default=None,
        help="condition for every sample: class index/name, or comma-joined label "
        "names for multi-label models; default: class-sorted grid",
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-ema", action="store_true", help="use the raw generator, not the EMA")
    s.set_defaults(func=_cmd_sample)
    _add_export_parser(sub)

    f = sub.add_parser("sefa", help="latent directions by closed-form factorization (SeFa)")
    f.add_argument("path", help="run directory (latest checkpoint) or checkpoint directory")
    f.add_argument("--k", type=int, default=5, help="number of directions (default 5)")
    f.add_argument("--out", default="sefa", help="output directory (default ./sefa)")
    f.add_argument("--n", type=int, default=6, help="samples per traversal (default 6)")
    f.add_argument("--steps", type=int, default=7, help="alphas per traversal (default 7)")
    f.add_argument("--distance", type=float, default=3.0, help="max |alpha| (default 3)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--no-ema", action="store_true", help="use the raw generator, not the EMA")
    f.add_argument(
        "--wandb",
        choices=WANDB_MODES,
        default="disabled",
        help="also log the traversals to W&B as a `sefa` job of the run (default disabled)",
    )
    f.set_defaults(func=_cmd_sefa)

    r = sub.add_parser("report", help="write a self-contained HTML report of a run")
    r.add_argument("run", help="run directory")
    r.add_argument("--out", default=None, help="output file (default <run>/report.html)")
    r.set_defaults(func=_cmd_report)

    c = sub.add_parser("config", help="print the resolved, validated config")
    c.add_argument("config")
    c.add_argument("overrides", nargs="*")
    c.set_defaults(func=_cmd_config)

    _add_shard_parser(sub)
    _add_sweep_parser(sub)
    _add_eval_parsers(sub)
    _add_experiments_parsers(sub)
    p.set_defaults(commands=sub.choices)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; options and dotted overrides mix in any order.

    Each subcommand parses its own arguments with `parse_intermixed_args`, so
    `gandist eval RUN --n 100 eval.nearest_k=3` works (plain parse_args stops collecting the
    positional overrides at the first option).
    """
    argv = list(argv)
    if " ".join(argv[:2]) in TWO_WORDS:
        argv[:2] = [" ".join(argv[:2])]
    parser = build_parser()
    commands = parser.get_default("commands")
    if argv and argv[0] in commands:
        args = commands[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
        return args
    if argv[:1] == ["experiments"]:
        parser.error("experiments: use `gandist experiments run` or `gandist experiments table`")
    return parser.parse_args(argv)  # --help, --version and unknown commands


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"gandist: config error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"gandist: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
