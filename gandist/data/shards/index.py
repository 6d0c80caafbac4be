"""`gandist shard index`: describe WebDataset shards written by any tool in a gandist manifest.

Shards from `webdataset.ShardWriter` (or any tar of `<key>.<ext>` members) carry no sample
counts, image size or label space, and the stream needs all three before the first batch (equal
batch counts on every rank). One pass over the tars finds them:

- samples are grouped exactly as the training stream groups them (webdataset's own
  `group_by_keys`: `__key__` is the member name up to its first dot), so the counts match;
- the image is the member with a `READ_FORMATS` extension; only its header is read (size,
  pixel mode), so indexing costs little more than reading the bytes, which are hashed on the way;
- labels: `.cls` integers -> class labels (num_labels = max + 1); `.json` holding a list of
  integers (or {"labels": [...]}) -> multi-label; anything else -> unconditional. A named
  field (`<key>.label.cls`, `<key>.labels.json`) counts too, when every sample has it under
  the same name (recorded as the manifest's label_member);
- mixed sizes or modes are recorded (the most common size and the majority's channels) and
  decoding resizes and converts the rest (gandist.data.shards.format.decode_image).

`gandist shard index` writes the manifest beside the shards (or to --out); training on shards
without one indexes them on first use (gandist.data.pipeline.locate_shards), beside them when
that directory can be written, else in `<data.root>/shard-index/<hash of the URLs>/`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tarfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from braceexpand import braceexpand
from PIL import Image
from tqdm.auto import tqdm
from webdataset import gopen
from webdataset.tariterators import group_by_keys, tar_file_expander

from gandist import __version__
from gandist.data.shards.format import (
    FORMAT_NAME,
    LABEL_EXT,
    MANIFEST,
    READ_FORMATS,
    Manifest,
    ShardEntry,
    find_image,
    label_fields,
    parse_manifest,
)
from gandist.data.shards.stream import _basename as shard_name  # the name a manifest lists
from gandist.data.shards.stream import _is_remote as is_remote
from gandist.data.sources.pil import mode_channels

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
INDEX_CACHE = "shard-index"  # under data.root, for shards whose own directory cannot be used
_CHUNK = 1 << 20


# ---------------------------------------------------------------- which shards


def expand_spec(spec: str) -> list[str]:
    """Shard URLs of a directory (its tars, sorted), a brace pattern, or a comma list of both."""
    spec = spec.strip()
    if not is_remote(spec) and Path(spec).is_dir():
        tars = sorted(
            str(p)
            for p in Path(spec).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.name.endswith(TAR_SUFFIXES)
        )
        if not tars:
            raise ValueError(f"{spec}: no shards here (looked for {', '.join(TAR_SUFFIXES)})")
        return tars
    urls = [u for part in spec.split(",") if part.strip() for u in braceexpand(part.strip())]
    if not urls:
        raise ValueError(f"shards:{spec!r} names no shards")
    missing = [u for u in urls if not is_remote(u) and not Path(u).is_file()]
    if missing:
        raise FileNotFoundError(
            f"shards:{spec}: {len(missing)} of {len(urls)} shard file(s) "
            f"do not exist, e.g. {missing[0]}"
        )
    names = Counter(shard_name(u) for u in urls)
    twice = [n for n, k in names.items() if k > 1]
    if twice:
        raise ValueError(
            f"shards:{spec}: {len(twice)} file name(s) occur twice, e.g. {twice[0]}; a manifest "
            "names shards by file name, so index each directory on its own"
        )
    return urls


def next_to_shards(urls: list[str]) -> Path | None:
    """`dataset.json` beside the shards when they are local files in one directory."""
    if any(is_remote(u) for u in urls):
        return None
    dirs = {Path(os.path.abspath(u)).parent for u in urls}  # not resolve(): links stay put
    return next(iter(dirs)) / MANIFEST if len(dirs) == 1 else None


def cache_path(urls: list[str], root: str | Path) -> Path:
    """`<root>/shard-index/<hash of the URLs>/dataset.json`; the file must be called
    dataset.json because data.manifest=<path> reads `<dir of path>/dataset.json`."""
    key = hashlib.sha256("\n".join(urls).encode()).hexdigest()[:16]
    return Path(root) / INDEX_CACHE / key / MANIFEST


# ---------------------------------------------------------------- scanning one shard


class _Counting:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end (tar readers stop before the trailing padding)."""
        while self.read(_CHUNK):
            pass


@dataclass
class ShardScan:
    """What one tar holds, as far as the manifest needs it."""

    url: str
    num_samples: int = 0
    num_bytes: int = 0
    sha256: str = ""
    formats: Counter = field(default_factory=Counter)  # image format -> samples
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> samples
    gray: int = 0  # samples whose image is grayscale
    cls: int = 0  # samples with an integer .cls
    cls_max: int = -1
    classes: set[int] = field(default_factory=set)  # the distinct .cls values
    multi: int = 0  # samples with a .json list of label indices
    multi_max: int = -1
    fields: Counter = field(default_factory=Counter)  # (kind, member holding the label) -> samples
    several_images: int = 0  # samples with more than one image member (the first is used)
    example: str = ""  # the first of them: its key and image members


def _where(url: str, key: str) -> str:
    return f"{url}: sample {key!r}"


def _image_header(fmt: str, data: bytes, where: str) -> tuple[tuple[int, int], bool]:
    """((width, height), grayscale?) from the header only (npy arrays are small, so loaded)."""
    if fmt == "npy":
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{where}: .npy image cannot be read ({exc})") from exc
        shape = arr.shape
        if arr.dtype != np.uint8 or not (
            arr.ndim == 2 or (arr.ndim == 3 and (shape[2] in (1, 3) or shape[0] in (1, 3)))
        ):
            raise ValueError(
                f"{where}: .npy images must be uint8 (H, W), (H, W, 1|3) or (1|3, H, W); "
                f"got {arr.dtype} {shape}"
            )
        if arr.ndim == 2:
            return (shape[1], shape[0]), True
        hwc = shape[2] in (1, 3) and shape[0] not in (1, 3)
        h, w, c = shape if hwc else (shape[1], shape[2], shape[0])
        return (w, h), c == 1
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size, mode_channels(img) == 1
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(
            f"{where}: the .{fmt} image cannot be read ({exc}); fix or remove the sample"
        ) from exc


def _labels(sample: dict[str, Any], scan: ShardScan, where: str) -> None:
    classes = label_fields(sample, "cls")
    if len(classes) > 1:
        raise ValueError(
            f"{where} has {len(classes)} class labels (.{', .'.join(classes)}); gandist reads "
            "one .cls per sample: write one"
        )
    if classes:
        text = sample[classes[0]].decode("utf-8", "replace").strip()
        if not text.lstrip("-").isdigit() or int(text) < 0:
            raise ValueError(
                f"{where}: .{classes[0]} is {text[:40]!r}, not a class index (an integer >= 0); "
                "gandist reads .cls as the class index, so map class names to indices when "
                "writing"
            )
        scan.cls += 1
        scan.cls_max = max(scan.cls_max, int(text))
        scan.classes.add(int(text))
        scan.fields["class", classes[0]] += 1
    for name in label_fields(sample, "json"):
        try:
            raw = json.loads(sample[name])
        except ValueError:
            continue  # metadata gandist does not read
        labels = raw.get("labels") if isinstance(raw, dict) else raw
        if isinstance(labels, list) and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in labels
        ):
            scan.multi += 1
            scan.multi_max = max([scan.multi_max, *labels])
            scan.fields["multi", name] += 1
            return


def _count_images(sample: dict[str, Any], scan: ShardScan) -> None:
    """Note samples with several images: files named like `frame.0001.png` (webdataset's key is
    the name up to the first dot) all join one sample, of which only the first image trains."""
    images = [k for k in sample if not k.startswith("__") and k.rsplit(".", 1)[-1] in READ_FORMATS]
    if len(images) > 1:
        scan.several_images += 1
        if not scan.example:
            more = ", ..." if len(images) > 3 else ""
            scan.example = f"{sample['__key__']!r}: .{', .'.join(images[:3])}{more}"


def _samples(stream: _Counting, url: str) -> Iterator[dict[str, Any]]:
    """Samples of one tar, grouped exactly as the training stream groups them."""
    return group_by_keys(tar_file_expander([{"url": url, "stream": stream}]))


def scan_shard(url: str) -> ShardScan:
    """Read one shard (a path or a `pipe:` URL) once: counts, hash, image facts, labels."""
    scan = ShardScan(url)
    try:
        raw = gopen(url, "rb")
    except OSError as exc:
        raise FileNotFoundError(f"{url}: cannot open the shard ({exc})") from exc
    stream = _Counting(raw)
    try:
        for sample in _samples(stream, url):
            where = _where(url, sample["__key__"])
            image = find_image(sample)
            if image is None:
                raise ValueError(
                    f"{where} has no image (members: "
                    f"{', '.join(k for k in sample if not k.startswith('__'))}; looked for "
                    f".{', .'.join(READ_FORMATS)}); every sample needs one image"
                )
            _count_images(sample, scan)
            size, gray = _image_header(*image, where)
            scan.num_samples += 1
            scan.formats[image[0]] += 1
            scan.sizes[size] += 1
            scan.gray += gray
            _labels(sample, scan, where)
        stream.drain()
    except (tarfile.TarError, EOFError) as exc:
        raise ValueError(f"{url}: not a readable tar ({exc})") from exc
    finally:
        raw.close()  # a pipe: URL raises here if its command failed
    scan.sha256 = stream.sha.hexdigest()
    scan.num_bytes = stream.size if is_remote(url) else Path(url).stat().st_size
    return scan


# ---------------------------------------------------------------- the manifest


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _class_sorted_note(scans: list[ShardScan]) -> list[str]:
    """A note when most shards hold a single class: shards written class by class. A loader
    worker streams whole shards through its shuffle buffer, so such shards give batches of one
    or a few classes unless the buffer spans many shards."""
    filled = [s for s in scans if s.num_samples]
    single = sum(len(s.classes) == 1 for s in filled)
    if len(filled) < 2 or single * 2 <= len(filled):
        return []
    per_shard = sum(s.num_samples for s in filled) // len(filled)
    return [
        f"{single} of {len(filled)} shards hold a single class (written class by class?): each "
        "loader worker streams whole shards, so batches would hold one or a few classes. "
        "Write the shards from a shuffled sample order (gandist shard does), or set "
        f"data.shuffle_buffer to several shards' samples (e.g. {10 * per_shard}; it holds "
        "encoded samples in each loader worker's memory)"
    ]


def build_manifest(spec: str, scans: list[ShardScan]) -> tuple[Manifest, list[str]]:
    """The manifest of scanned shards, and notes on what was decided for mixed data."""
    notes: list[str] = []
    total = sum(s.num_samples for s in scans)
    if not total:
        raise ValueError(f"shards:{spec}: the shards hold no samples")
    formats: Counter = sum((s.formats for s in scans), Counter())
    sizes: Counter = sum((s.sizes for s in scans), Counter())
    gray = sum(s.gray for s in scans)
    channels = 1 if gray > total - gray else 3
    if 0 < gray < total:
        notes.append(
            f"{gray} of {total} images are grayscale, {total - gray} colour: using {channels} "
            f"channel{'s' if channels > 1 else ''} (the majority); data.channels=1 or 3 chooses"
        )
    (w, h), common = sizes.most_common(1)[0]
    image_size = min(w, h)
    if len(sizes) > 1 or w != h:
        shown = ", ".join(f"{a}x{b} ({n})" for (a, b), n in sizes.most_common(3))
        more = f" and {len(sizes) - 3} more" if len(sizes) > 3 else ""
        notes.append(
            f"images of {plural(len(sizes), 'size')} ({shown}{more}): training resizes them to "
            f"{image_size}x{image_size} (shorter side, centre crop), or to data.image_size"
        )
    cls, multi = sum(s.cls for s in scans), sum(s.multi for s in scans)
    cls_max, multi_max = max(s.cls_max for s in scans), max(s.multi_max for s in scans)
    several = sum(s.several_images for s in scans)
    if several:
        example = next(s.example for s in scans if s.example)
        notes.append(
            f"{several} of {total} samples hold more than one image (e.g. {example}); training "
            "uses the first of each. webdataset groups a tar's files into samples by the name "
            "up to the first dot, so files named like frame.0001.png all join one sample: "
            "rename them (frame_0001.png) if each is an image of its own"
        )
    fields: Counter = sum((s.fields for s in scans), Counter())
    members = {kind: [m for (k, m) in fields if k == kind] for kind in LABEL_EXT}
    label_member = ""
    if cls == total and len(members["class"]) == 1:
        label_type, num_labels, label_member = "class", cls_max + 1, members["class"][0]
    elif multi == total and multi_max >= 0 and len(members["multi"]) == 1:
        label_type, num_labels, label_member = "multi", multi_max + 1, members["multi"][0]
    else:
        label_type, num_labels = "none", 0
        kind = "class" if cls >= multi else "multi"
        if max(cls, multi) == total:
            shown = ", ".join(f".{m} ({fields[kind, m]})" for m in sorted(members[kind]))
            notes.append(
                f"the labels are in members of different names ({shown}): training "
                "unconditionally; write every sample's label under one name"
            )
        elif cls or multi:
            ext = ".cls" if cls >= multi else ".json label list"
            notes.append(
                f"only {max(cls, multi)} of {total} samples have a {ext}: training "
                "unconditionally (every sample needs a label for a conditional model)"
            )
    if label_type == "class" and num_labels > 1:
        notes.extend(_class_sorted_note(scans))
    manifest = Manifest(
        source=spec,
        image_size=image_size,
        channels=channels,
        image_format=formats.most_common(1)[0][0],
        label_type=label_type,
        label_names=[str(i) for i in range(num_labels)],
        shards=[ShardEntry(shard_name(s.url), s.num_samples, s.sha256, s.num_bytes) for s in scans],
        gandist_version=__version__,
        image_sizes={f"{a}x{b}": n for (a, b), n in sizes.most_common()},
        indexed=True,
        label_member="" if label_member == LABEL_EXT.get(label_type) else label_member,
    )
    return manifest, notes


def index_shards(
    spec: str, workers: int = 4, progress: bool | None = None
) -> tuple[Manifest, list[str]]:
    """Scan every shard of `spec` (`workers` at a time, threads: the work is reading, hashing
    and tar parsing, and pipe: URLs run their own processes) into a manifest and notes.

    progress: True shows a bar, None only on a terminal, False never."""
    urls = expand_spec(spec)
    scans: dict[int, ShardScan] = {}
    bar = tqdm(
        total=len(urls),
        unit="shard",
        desc="indexing shards",
        disable=(not progress if progress is not None else None),
    )
    pool = ThreadPoolExecutor(max(1, min(workers, len(urls))))
    try:
        jobs = {pool.submit(scan_shard, u): i for i, u in enumerate(urls)}
        for job in as_completed(jobs):
            scans[jobs[job]] = job.result()  # the first bad shard stops the index
            bar.update(1)
            bar.set_postfix(samples=sum(s.num_samples for s in scans.values()))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return build_manifest(spec, [scans[i] for i in range(len(urls))])


def write_index(manifest: Manifest, path: Path) -> Path:
    """Write atomically under a name no other writer uses (several nodes may index at once;
    they write the same content, and each rename is whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{secrets.randbelow(10**6)}")
    tmp.write_text(manifest.to_json())
    tmp.replace(path)
    return path


def describe(manifest: Manifest) -> str:
    """One line: samples, shards, image, labels."""
    labels = {
        "class": f"class labels ({manifest.num_labels})",
        "multi": f"multi-labels ({manifest.num_labels})",
        "none": "no labels",
    }[manifest.label_type]
    if manifest.label_member:
        labels += f" from .{manifest.label_member}"
    return (
        f"{plural(manifest.num_samples, 'sample')} in {plural(len(manifest.shards), 'shard')}: "
        f"{manifest.image_size}px {manifest.image_format}, "
        f"{plural(manifest.channels, 'channel')}, {labels}"
    )


def existing_manifest(path: Path) -> Manifest | None:
    """The gandist manifest at `path`; None when there is none or it is another tool's file."""
    if not path.is_file():
        return None
    text = path.read_text()
    try:
        if json.loads(text).get("format") != FORMAT_NAME:
            return None
    except (ValueError, AttributeError):
        return None
    return parse_manifest(text, str(path))  # ours: a damaged one is an error, not ignored


def run_index_command(spec: str, out: str | None, workers: int, force: bool) -> str:
    """`gandist shard index`: index, write, and return what to print."""
    urls = expand_spec(spec)
    path = Path(out) if out else next_to_shards(urls)
    if path is None:
        raise ValueError(
            f"{spec}: the shards are remote or in several directories; name the manifest with "
            "--out PATH/dataset.json, then train with data.manifest=PATH/dataset.json"
        )
    if path.is_dir() or not path.name.endswith(".json"):
        path = path / MANIFEST
    old = existing_manifest(path)
    if old is not None and not old.indexed and not force:
        raise ValueError(
            f"{path} was written by `gandist shard` with these shards (it names their classes); "
            "keep it, or pass --force to replace it with an index, or --out to write elsewhere"
        )
    manifest, notes = index_shards(spec, workers=workers, progress=True)
    write_index(manifest, path)
    return "\n".join([*notes, describe(manifest), str(path)])
