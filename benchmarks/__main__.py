"""`python -m benchmarks <name> [options]`: run one benchmark and print/write its JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import loader, noise, scaling, step_cost, train, variants

# name -> (module with add_arguments/run, help)
BENCHMARKS = {
    "loader": (loader, "decoded img/s: shards vs torchvision ImageFolder (and the trainer)"),
    "train": (train, "ms/step of gandist vs a bare PyTorch loop, side by side; FLOPs"),
    "step-cost": (step_cost, "a WGAN-GP critic step with vs without the gradient penalty"),
    "scaling": (scaling, "training img/s on 1 vs N processes (torchrun), same global batch"),
    "noise": (noise, "per-rank ms/step of drawing z and epsilon vs world size (weak scaling)"),
    "variants": (variants, "precision x channels_last x torch.compile of the same step"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = p.add_subparsers(dest="name", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        module.add_arguments(sub.add_parser(name, help=help_text))
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = p.parse_args(argv)
    result = BENCHMARKS[args.name][0].run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
