"""`gandist` command line: each subcommand calls one function of the package."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from gandist import __version__, cli_data, cli_eval
from gandist.cli_command import Command
from gandist.cli_data import SHARD_INDEX
from gandist.cli_types import positive_int
from gandist.config import ConfigError, dump_yaml, load_config


def _cmd_train(args: argparse.Namespace) -> int:
    # The stop handlers first (no torch yet): a SIGTERM during the imports, shard writing or
    # W&B start-up then stops the run after its first step with a checkpoint and status, where
    # it killed the process with neither.
    from gandist.training.preemption import StopRequest

    stop = StopRequest().install()
    try:
        cfg = load_config(args.config, args.overrides)
        from gandist.run_files import EXIT_PREEMPTED
        from gandist.training.trainer import train

        preempted = train(cfg, stop).preempted
    finally:
        stop.uninstall()
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
        args.path,
        args.n,
        args.out,
        labels=args.labels,
        seed=args.seed,
        use_ema=not args.no_ema,
        truncation=args.truncation,
        rejection=args.rejection,
    )
    print(out)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from gandist.tracking.report import write_report

    print(write_report(args.run, args.out))
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    print(dump_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from gandist.sweep_runs import run_sweep  # the logic: sweep.py, sweep_runs.py

    return run_sweep(
        args.sweep,
        args.overrides,
        list_points=args.list,
        count=args.count,
        index=args.index,
        dry_run=args.dry_run,
        max_parallel=args.max_parallel,
    )


def _sweep_arguments(w: argparse.ArgumentParser) -> None:
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


def _cmd_export(args: argparse.Namespace) -> int:
    from gandist.export import export_generator

    out, meta = export_generator(args.path, args.format, args.out, use_ema=not args.no_ema)
    inputs = ", ".join(meta["inputs"])
    print(
        f"{out}: {args.format} generator ({meta['weights']} weights, step {meta['step']}); "
        f"inputs {inputs}; output {meta['output_shape']}"
    )
    return 0


def _export_arguments(x: argparse.ArgumentParser) -> None:
    x.add_argument("path", help="run directory (latest checkpoint) or checkpoint directory")
    x.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    x.add_argument("--out", required=True, help="file to write, e.g. generator.pt / .onnx")
    x.add_argument("--no-ema", action="store_true", help="export the raw generator, not the EMA")


def _cmd_experiments_run(args: argparse.Namespace) -> int:
    from gandist.experiments import run_experiment

    return run_experiment(args.configs, args.out, args.overrides, args.only, args.threads)


def _cmd_experiments_table(args: argparse.Namespace) -> int:
    from gandist.experiments import render

    epochs = [int(e) for e in args.epochs.split(",") if e.strip()]
    print(render(args.runs, args.kind, args.losses, epochs, args.curve), end="")
    return 0


def _experiments_run_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("configs", type=Path, help="e.g. configs/experiments/toy2d_optimizers")
    r.add_argument("overrides", nargs="*", help="dotted overrides for every run")
    r.add_argument("--out", type=Path, default=Path("runs/experiments"))
    r.add_argument("--only", nargs="*", default=[], help="config stems to run (default all)")
    r.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS for each run")


def _experiments_table_arguments(t: argparse.ArgumentParser) -> None:
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


EXPERIMENTS_RUN = "experiments run"
EXPERIMENTS_TABLE = "experiments table"
# Subcommands typed as two words; main() joins them before parsing.
TWO_WORDS = (SHARD_INDEX, EXPERIMENTS_RUN, EXPERIMENTS_TABLE)


def _train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("config", help="YAML config, e.g. configs/dcgan_digits.yaml")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.d.lr=1e-4")


def _sample_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("path", help="run directory (uses its latest checkpoint) or checkpoint dir")
    s.add_argument(
        "--n",
        type=positive_int,
        default=None,
        help="number of samples (default 64; class models without --labels: as many per class "
        "as fit in 64, one row per class)",
    )
    s.add_argument(
        "--out",
        default="samples.png",
        help="output .png grid (scatter for 2-D models) or .npy array (default samples.png)",
    )
    s.add_argument(
        "--labels",
        default=None,
        help="condition for every sample: class name or index (a name first: a folder "
        "named 1 is '1'), or comma-joined label names for multi-label models; default: "
        "class-sorted grid",
    )
    s.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the samples' z and of a multi-label model's label sets (default 0; "
        "G.sample(n, seed=...) draws the same)",
    )
    s.add_argument("--no-ema", action="store_true", help="use the raw generator, not the EMA")
    s.add_argument(
        "--truncation",
        type=float,
        default=1.0,
        metavar="PSI",
        help="sample z scaled by PSI in (0, 1]: more typical, less varied samples (default 1)",
    )
    s.add_argument(
        "--rejection",
        type=float,
        default=0.0,
        metavar="Q",
        help="discriminator rejection sampling: the run's critic, calibrated on the frozen G "
        "(the run's eval.rejection_steps), drops the samples it finds least real; Q in [0, 1) "
        "sets the threshold, 0.5 keeps about half of the candidates (default 0: off)",
    )


def _report_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("run", help="run directory")
    r.add_argument("--out", default=None, help="output file (default <run>/report.html)")


def _config_arguments(c: argparse.ArgumentParser) -> None:
    _train_arguments(c)


COMMANDS = (
    Command(
        "train",
        "train a GAN from a YAML config (launch with accelerate "
        "launch or torchrun for several processes)",
        _train_arguments,
        _cmd_train,
    ),
    Command(
        "sample", "write samples from a run or checkpoint directory", _sample_arguments, _cmd_sample
    ),
    Command(
        "export",
        "write a run's generator as TorchScript or ONNX, loadable without gandist "
        "(EMA weights when the run has them)",
        _export_arguments,
        _cmd_export,
    ),
    Command(
        "report", "write a self-contained HTML report of a run", _report_arguments, _cmd_report
    ),
    Command("config", "print the resolved, validated config", _config_arguments, _cmd_config),
    Command(
        "sweep",
        "train every point of a grid of overrides (a sweep file), or one point with "
        "--index (what each SLURM array task of slurm/sweep.sh runs)",
        _sweep_arguments,
        _cmd_sweep,
    ),
    Command(
        EXPERIMENTS_RUN,
        "train every config of an experiment directory, one after another",
        _experiments_run_arguments,
        _cmd_experiments_run,
    ),
    Command(
        EXPERIMENTS_TABLE,
        "print an experiment's results as Markdown",
        _experiments_table_arguments,
        _cmd_experiments_table,
    ),
)
# The order `gandist --help` lists them in.
ORDER = (
    "train", "sample", "export", "sefa", "report", "config", "shard", SHARD_INDEX, "sweep",
    "eval", "train-evaluator", EXPERIMENTS_RUN, EXPERIMENTS_TABLE,
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """argparse's parser, naming only the arguments that are required.

    Why: `parse_intermixed_args` lists optional positionals (the `overrides` list) among the
    missing ones, so `gandist train` alone said "required: config, overrides"."""

    REQUIRED = "the following arguments are required: "

    def error(self, message: str) -> NoReturn:
        if message.startswith(self.REQUIRED):
            optional = {
                a.dest for a in self._actions if not a.option_strings and a.nargs in ("*", "?")
            }
            names = [n for n in message[len(self.REQUIRED) :].split(", ") if n not in optional]
            message = self.REQUIRED + ", ".join(names)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gandist", description=__doc__)
    p.add_argument("--version", action="version", version=f"gandist {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands = {c.name: c for c in (*COMMANDS, *cli_data.COMMANDS, *cli_eval.COMMANDS)}
    assert sorted(commands) == sorted(ORDER), "a subcommand missing from ORDER"
    for name in ORDER:
        commands[name].install(sub)
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


def _leave_process_group() -> None:
    """Wait for every rank, then destroy the process group a finished command joined (train,
    eval, sample, sefa under torchrun all can).

    Why the wait: a rank whose last collective just returned (rank 1 of `gandist eval
    --rejection` returns right after a reduce while rank 0 still scores) can reach interpreter
    teardown while a gloo worker thread is still releasing that collective's tensors; taking the
    GIL then aborts the rank ("terminate called without an active exception") after its results
    are written (seen in CI). Destroying is not enough on its own: once torch._dynamo has been
    imported (torchmetrics imports it) the group outlives destroy_process_group and its worker
    threads live on to teardown. The barrier returns only when every rank has finished its
    collectives. Only after success: a rank that failed may leave the others inside a
    collective, where a barrier or destroy would hang."""
    dist = sys.modules.get("torch.distributed")  # never imported: no group to leave
    if dist is not None and dist.is_available() and dist.is_initialized():
        if dist.get_backend() == "nccl":  # NCCL's barrier wants this rank's GPU named
            import torch

            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        code = args.func(args)
        _leave_process_group()
        return code
    except ConfigError as exc:
        # every process reads the same files: said once per node (a launcher's local rank 0;
        # each node's log keeps it), not once per GPU
        if os.environ.get("LOCAL_RANK", "0") == "0":
            print(f"gandist: config error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"gandist: error: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:  # a container run as another user, a read-only volume
        where = Path(exc.filename).absolute() if exc.filename else "a file"
        print(
            f"gandist: error: permission denied: {where} (user id {os.getuid()}). Make it "
            "writable for this user, or point train.output_dir and data.root (the runs and "
            f"the data caches; relative paths start at {Path.cwd()}) at a directory that is",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
