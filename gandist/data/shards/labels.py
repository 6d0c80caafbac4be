"""Labels files for folder sources: `--labels` (CSV or JSON) and `--objects` (the vocabulary)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

LabelValue = str | int | list[str | int]


def _norm_name(name: str) -> str:
    name = name.strip().replace("\\", "/")
    return name[2:] if name.startswith("./") else name


def read_labels_file(path: str | Path) -> dict[str, LabelValue]:
    """CSV with header `filename,label`, or JSON {"name": label | [labels]} (iCLEVR style).

    Names are paths relative to the image folder (or bare file names); a label is a class name or
    index, or for JSON a list of names/indices (multi-hot).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--labels: file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _labels_json(path, text)
    return _labels_csv(path, text)


def _labels_json(path: Path, text: str) -> dict[str, LabelValue]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--labels {path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f'--labels {path}: expected an object {{"img.png": label, ...}}')
    out: dict[str, LabelValue] = {}
    for name, value in raw.items():
        ok = isinstance(value, (str, int)) or (
            isinstance(value, list) and all(isinstance(v, (str, int)) for v in value)
        )
        if not ok or isinstance(value, bool):
            raise ValueError(
                f"--labels {path}: {name!r}: a label must be a name, an index or a "
                f"list of them, got {value!r}"
            )
        out[_norm_name(name)] = value
    return out


def _labels_csv(path: Path, text: str) -> dict[str, LabelValue]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in reader.fieldnames or []]
    if "filename" not in fields or "label" not in fields:
        raise ValueError(
            f"--labels {path}: a CSV labels file needs a header `filename,label`, "
            f"got {','.join(fields) or 'nothing'}"
        )
    out: dict[str, LabelValue] = {}
    for row in reader:
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        name = _norm_name(row["filename"])
        if name in out and out[name] != row["label"]:
            raise ValueError(f"--labels {path}: {name!r} has two different labels")
        out[name] = row["label"]
    return out


def read_objects_file(path: str | Path) -> list[str]:
    """The label vocabulary: JSON {"gray cube": 0, ...} (iCLEVR's objects.json) or ["a", ...]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--objects: file not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"--objects {path}: not valid JSON ({exc})") from exc
    if isinstance(raw, list) and all(isinstance(n, str) for n in raw):
        names = list(raw)
    elif (
        isinstance(raw, dict)
        and all(isinstance(i, int) for i in raw.values())
        and sorted(raw.values()) == list(range(len(raw)))
    ):
        names = sorted(raw, key=raw.__getitem__)
    else:
        raise ValueError(
            f"--objects {path}: expected a list of names or {{name: index}} with indices 0..n-1"
        )
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"--objects {path}: names must be unique and at least one")
    return names


def _is_index(value: str | int) -> bool:
    return isinstance(value, int) or value.strip().isdigit()


def _vocabulary(values: list[LabelValue], objects_file: str | None) -> list[str]:
    """The objects file's names; else, if every label is an integer, "0".."max"; else the label
    names found, sorted (so the order does not depend on the order of the file)."""
    if objects_file:
        return read_objects_file(objects_file)
    flat = [v for value in values for v in (value if isinstance(value, list) else [value])]
    if flat and all(_is_index(v) for v in flat):
        return [str(i) for i in range(max(int(v) for v in flat) + 1)]
    return sorted({str(v) for v in flat})


def _label_index(value: str | int, lookup: dict[str, int], name: str, source: str) -> int:
    if str(value) in lookup:
        return lookup[str(value)]
    if _is_index(value) and 0 <= int(value) < len(lookup):
        return int(value)
    raise ValueError(
        f"--labels {source}: label {value!r} of {name!r} is not in the label "
        f"vocabulary ({', '.join(list(lookup)[:8])}{', ...' if len(lookup) > 8 else ''})"
    )


def _match(rel: str, table: dict[str, LabelValue], basename_count: dict[str, int]) -> Any:
    """A file's label: by relative path, else by bare file name if no other image shares it."""
    if rel in table:
        return table[rel]
    base = rel.rsplit("/", 1)[-1]
    return table.get(base) if basename_count.get(base) == 1 else None


def labels_from_file(
    rels: list[str], labels_file: str, objects_file: str | None
) -> tuple[str, list[str], list[int | tuple[int, ...] | None]]:
    """(label_type, names, label per file; None where the file has no entry)."""
    table = read_labels_file(labels_file)
    multi = any(isinstance(v, list) for v in table.values())
    names = _vocabulary(list(table.values()), objects_file)
    lookup = {n: i for i, n in enumerate(names)}
    counts: dict[str, int] = {}
    for rel in rels:
        base = rel.rsplit("/", 1)[-1]
        counts[base] = counts.get(base, 0) + 1
    labels: list[int | tuple[int, ...] | None] = []
    for rel in rels:
        value = _match(rel, table, counts)
        if value is None:
            labels.append(None)
        elif multi:
            values = value if isinstance(value, list) else [value]
            labels.append(
                tuple(sorted({_label_index(v, lookup, rel, labels_file) for v in values}))
            )
        else:
            labels.append(_label_index(value, lookup, rel, labels_file))
    return ("multi" if multi else "class"), names, labels
