"""What a `gandist shard` run found and did: bad-input reasons, their counts, the closing report.

Bad input is converted or skipped, counted per reason (`REASONS`) with the first few paths;
`strict=True` turns the first one into a ValueError (`strict_error`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_EXAMPLES = 5  # paths remembered per reason

# reason -> what happened; the first group skips a file, the second converts it.
SKIP_REASONS: dict[str, str] = {
    "corrupt": "cannot be decoded (corrupt, truncated or not really an image)",
    "too_large": "more pixels than PIL's decompression-bomb limit",
    "too_small": "shorter side below image_size/4",
    "not_image": "not an image file",
    "missing_label": "no entry in the labels file",
}
CONVERT_REASONS: dict[str, str] = {
    "converted_mode": "pixel mode converted (CMYK/16-bit/alpha/palette/gray<->RGB)",
    "duplicate_name": "key collides with another file's; a __N suffix was added",
}
REASONS = {**SKIP_REASONS, **CONVERT_REASONS}


@dataclass
class Issues:
    """Counts per reason plus the first few paths of each, mergeable across shards."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, path: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(path)

    def merge(self, other: Issues) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
            shown = self.examples.setdefault(reason, [])
            shown.extend(other.examples.get(reason, [])[: MAX_EXAMPLES - len(shown)])

    def of(self, reasons: Iterable[str]) -> dict[str, int]:
        return {r: self.counts[r] for r in reasons if self.counts.get(r)}

    def first(self) -> tuple[str, str] | None:
        """The first recorded (reason, path), reasons in `REASONS` order, for --strict."""
        for reason in REASONS:
            if self.examples.get(reason):
                return reason, self.examples[reason][0]
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "examples": self.examples}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Issues:
        return cls(
            dict(d.get("counts", {})), {k: list(v) for k, v in d.get("examples", {}).items()}
        )


def strict_error(reason: str, path: str) -> ValueError:
    return ValueError(f"--strict: {path}: {reason} ({REASONS[reason]})")


@dataclass
class ShardReport:
    """What `write_shards` did; `summary()` is the closing text of `gandist shard`."""

    out_dir: Path
    manifest: Path
    num_samples: int
    num_shards: int
    skipped: dict[str, int]  # reason -> files left out
    examples: dict[str, list[str]]  # reason -> first few paths (skipped and converted)
    shards_reused: int = 0
    converted: dict[str, int] = field(default_factory=dict)  # reason -> files kept, altered
    part: tuple[int, int] | None = None  # (k, n) when written as one of n parts
    complete: bool = True  # False: a part whose manifest waits for the other parts

    def summary(self) -> str:
        reused = f" ({self.shards_reused} reused from an earlier run)" if self.shards_reused else ""
        which = ""
        if self.part:
            last = ", the last to finish: the whole directory" if self.complete else ""
            which = f"part {self.part[0]}/{self.part[1]}{last}: "
        lines = [
            f"{which}wrote {self.num_samples} samples in {self.num_shards} "
            f"shard{'' if self.num_shards == 1 else 's'} to "
            f"{self.out_dir}{reused}"
        ]
        if not self.complete:
            lines.append("other parts are unfinished: the last part to finish writes the manifest")
        lines += self.counted("skipped", self.skipped) + self.counted("converted", self.converted)
        return "\n".join(lines)

    def counted(self, title: str, counts: dict[str, int]) -> list[str]:
        """`<title> N:` and one line per reason with its first paths; [] when none."""
        if not counts:
            return []
        lines = [f"{title} {sum(counts.values())}:"]
        for reason, n in counts.items():
            shown = ", ".join(self.examples.get(reason, []))
            more = ", ..." if n > len(self.examples.get(reason, [])) else ""
            lines.append(f"  {reason}: {n} - {REASONS[reason]}: {shown}{more}")
        return lines
