"""`python -m benchmarks <name> [options]`: run one benchmark and print/write its JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import loader, train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = p.add_subparsers(dest="name", required=True)
    lp = sub.add_parser("loader", help="decoded img/s: shards vs torchvision ImageFolder")
    loader.add_arguments(lp)
    tp = sub.add_parser("train", help="ms/step of gandist vs a bare PyTorch loop, side by side")
    train.add_arguments(tp)
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args(argv)
    result = {"loader": loader.run, "train": train.run}[args.name](args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
