"""`gandist` command line: each subcommand calls one function of the package."""

from __future__ import annotations

import argparse
import sys

from gandist import __version__
from gandist.config import ConfigError, dump_yaml, load_config


def _cmd_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    from gandist.training.trainer import train

    train(cfg)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from gandist.sampling import sample

    out = sample(
        args.path, args.n, args.out, labels=args.labels, seed=args.seed, use_ema=not args.no_ema
    )
    print(out)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    print(dump_yaml(load_config(args.config, args.overrides)), end="")
    return 0


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

    c = sub.add_parser("config", help="print the resolved, validated config")
    c.add_argument("config")
    c.add_argument("overrides", nargs="*")
    c.set_defaults(func=_cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
