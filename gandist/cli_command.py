"""One shape for every `gandist` subcommand: a name and help, the arguments it adds to its
parser, and the function it runs with the parsed arguments (the one place that reads them:
the package's functions take plain values). cli.py assembles the parser from these."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str | None = None

    def install(self, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
        p = sub.add_parser(self.name, help=self.help, epilog=self.epilog)
        self.add_arguments(p)
        p.set_defaults(func=self.run)
        return p
