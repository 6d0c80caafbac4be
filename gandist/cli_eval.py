"""`gandist eval`, `gandist train-evaluator` and `gandist sefa`: their arguments and what they
run (cli.py assembles the parser from COMMANDS)."""

from __future__ import annotations

import argparse
import sys

from gandist.cli_command import Command
from gandist.cli_data import add_source_arguments, source_config
from gandist.cli_types import positive_int
from gandist.config import WANDB_MODES


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
    if args.n is not None:
        overrides.append(f"eval.n_samples={args.n}")
    if args.extractor:
        overrides.append(f"eval.extractor={args.extractor}")
    if args.evaluator:
        overrides.append(f"eval.evaluator={args.evaluator}")
    if args.truncation is not None:
        overrides.append(f"eval.truncation={args.truncation}")
    if args.rejection is not None:
        overrides.append(f"eval.rejection={args.rejection}")
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
    from gandist.evaluation.train_evaluator import train_evaluator, weak_evaluator_warning

    data = source_config(
        args, source=args.source, image_size=args.image_size, channels=args.channels
    )
    out, spec = train_evaluator(
        data, args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr
    )
    scores = ", ".join(f"{k} {v:.4f}" for k, v in spec.heldout.items() if k != "samples")
    print(f"held-out ({int(spec.heldout['samples'])} samples): {scores}")
    print(out)
    warning = weak_evaluator_warning(spec)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _eval_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("path", help="run directory (latest checkpoint) or checkpoint directory")
    e.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. eval.nearest_k=3")
    e.add_argument(
        "--n", type=positive_int, default=None, help="samples (default: the run's eval.n_samples)"
    )
    e.add_argument("--extractor", choices=("domain", "inception"), default=None)
    e.add_argument("--evaluator", default=None, help="evaluator directory (domain extractor)")
    e.add_argument("--out", default=None, help="JSON path (default <run>/evals/step_N-X.json)")
    e.add_argument(
        "--truncation",
        type=float,
        default=None,
        metavar="PSI",
        help="score samples from z scaled by PSI in (0, 1]: precision up, recall and FID "
        "worse (default: the run's eval.truncation, 1 = none)",
    )
    e.add_argument(
        "--rejection",
        type=float,
        default=None,
        metavar="Q",
        help="score with discriminator rejection sampling: the run's critic, calibrated on the "
        "frozen G (eval.rejection_steps), drops the samples it finds least real; Q in [0, 1) "
        "is the quantile of its score used as the threshold shift, 0.5 keeps about half "
        "(default: the run's eval.rejection, 0 = none)",
    )
    e.add_argument(
        "--wandb",
        choices=WANDB_MODES,
        default="",
        help="W&B mode for the eval run (default: the run's tracking.wandb)",
    )
    e.add_argument("--no-ema", action="store_true", help="use the raw generator, not the EMA")


def _train_evaluator_arguments(v: argparse.ArgumentParser) -> None:
    v.add_argument(
        "source",
        help="digits | shapes | glyphs | folder:<path> | torchvision:<Name> | shards:<urls>",
    )
    v.add_argument("--image-size", type=int, default=0, help="as the run's data.image_size")
    v.add_argument("--channels", type=int, choices=(1, 3), default=0)
    add_source_arguments(v)
    v.add_argument("--epochs", type=int, default=0, help="default: about 1000 batches")
    v.add_argument("--batch-size", type=int, default=64)
    v.add_argument("--lr", type=float, default=3e-3)
    v.add_argument(
        "--out", default=None, help="directory (default <root>/evaluators/<data set key>)"
    )


def _sefa_arguments(f: argparse.ArgumentParser) -> None:
    f.add_argument("path", help="run directory (latest checkpoint) or checkpoint directory")
    f.add_argument("--k", type=positive_int, default=5, help="number of directions (default 5)")
    f.add_argument("--out", default="sefa", help="output directory (default ./sefa)")
    f.add_argument("--n", type=positive_int, default=6, help="samples per traversal (default 6)")
    f.add_argument("--steps", type=positive_int, default=7, help="alphas per traversal (default 7)")
    f.add_argument("--distance", type=float, default=3.0, help="max |alpha| (default 3)")
    f.add_argument("--seed", type=int, default=0, help="seed of the traversals' z (default 0)")
    f.add_argument("--no-ema", action="store_true", help="use the raw generator, not the EMA")
    f.add_argument(
        "--wandb",
        choices=WANDB_MODES,
        default="disabled",
        help="also log the traversals to W&B as a `sefa` job of the run (default disabled)",
    )


COMMANDS = (
    Command(
        "eval",
        "score a run or checkpoint: FID, KID, precision/recall, density/coverage, "
        "conditional accuracy (images) or mode metrics (2-D); works under torchrun too",
        _eval_arguments,
        _cmd_eval,
    ),
    Command(
        "train-evaluator",
        "train the domain evaluator (a small classifier) of a labelled image data set",
        _train_evaluator_arguments,
        _cmd_train_evaluator,
    ),
    Command(
        "sefa",
        "latent directions by closed-form factorization (SeFa)",
        _sefa_arguments,
        _cmd_sefa,
    ),
)
