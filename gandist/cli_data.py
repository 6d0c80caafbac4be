"""`gandist shard` and `gandist shard index`: their arguments and what they run (cli.py
assembles the parser from COMMANDS)."""

from __future__ import annotations

import argparse

from gandist.cli_command import Command

SHARD_INDEX = "shard index"  # typed as two words; cli.main() joins them


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Flags that pick out a data source's samples (shared by shard and train-evaluator)."""
    p.add_argument("--root", default="data", help="data root (default data)")
    p.add_argument("--download", action="store_true", help="torchvision: download if missing")
    p.add_argument("--n-samples", type=int, default=0, help="generated sources: how many")
    p.add_argument("--seed", type=int, default=0, help="generated sources: seed")


def source_config(args: argparse.Namespace, **fields: object):
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
        data_cfg=source_config(args),
    )
    print(report.summary())
    if report.complete:  # a part that left the manifest to the last part names none
        print(report.manifest)
    return 0


def _byte_size(text: str) -> int:
    """argparse type for --shard-bytes; imported lazily so `gandist --help` stays light."""
    from gandist.data.shards.write import parse_bytes

    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard_arguments(h: argparse.ArgumentParser) -> None:
    h.add_argument("source", help="digits | shapes | glyphs | folder:<path> | torchvision:<Name>")
    h.add_argument("out_dir", help="directory for data-NNNNNN.tar and dataset.json")
    size = h.add_mutually_exclusive_group()
    size.add_argument("--shard-size", type=int, default=0, help="samples per shard (default 1000)")
    size.add_argument(
        "--shard-bytes",
        type=_byte_size,
        default=0,
        help="target shard size, e.g. 256MB (KB/MB/GB = 1000^n, KiB/MiB/GiB = 1024^n)",
    )
    h.add_argument(
        "--image-size",
        type=int,
        default=0,
        help="square side (default: 32 for digits and glyphs, 64 for shapes and folders, else the "
        "images' own)",
    )
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
    add_source_arguments(h)


def _shard_index_arguments(i: argparse.ArgumentParser) -> None:
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


def _cmd_shard_index(args: argparse.Namespace) -> int:
    from gandist.data.shards.index import run_index_command

    print(run_index_command(args.shards, args.out, args.workers, args.force))
    return 0


COMMANDS = (
    Command(
        "shard",
        "write an image source as WebDataset tar shards plus a dataset.json manifest "
        "(resumable: a re-run reuses complete shards)",
        _shard_arguments,
        _cmd_shard,
        epilog="Shards written by another tool (webdataset.ShardWriter): gandist shard index <dir>",
    ),
    Command(
        SHARD_INDEX,  # typed as two words; main() joins them (`shard <source>` keeps working)
        "describe existing WebDataset shards (e.g. webdataset.ShardWriter's .jpg + .cls) "
        "in a dataset.json: sample counts, image size and channels, labels; one pass",
        _shard_index_arguments,
        _cmd_shard_index,
    ),
)
