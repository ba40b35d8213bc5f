"""Per-shard stage statistics that add up: ``input = kept + dropped + rejected``, merged into ``stats.json``."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ShardStats:
    """Counts and timings of one stage on one shard (or, summed, on many).

    Attributes:
        input: records read (a shard that could not be opened counts as one record).
        kept: records the stage passed on.
        dropped: records the stage decided not to keep (prune decisions).
        rejected: records that were bad input; each is in ``rejects/``.
        rejected_by_reason: ``rejected`` split by reason.
        seconds: wall time spent.
        shards: shards processed.
        counters: stage-specific counts (``blank_lines``, ``ids_derived``, ``tokens`` ...).
    """

    input: int = 0
    kept: int = 0
    dropped: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    shards: int = 0
    counters: dict[str, float] = field(default_factory=dict)

    def __add__(self, other: ShardStats) -> ShardStats:
        return ShardStats(
            input=self.input + other.input,
            kept=self.kept + other.kept,
            dropped=self.dropped + other.dropped,
            rejected=self.rejected + other.rejected,
            rejected_by_reason=dict(Counter(self.rejected_by_reason) + Counter(other.rejected_by_reason)),
            seconds=self.seconds + other.seconds,
            shards=self.shards + other.shards,
            counters=dict(Counter(self.counters) + Counter(other.counters)),
        )

    def add_rejects(self, rejects: list[dict[str, Any]]) -> None:
        for r in rejects:
            n = int(r.get("n_rows") or 1)
            self.rejected += n
            self.input += n
            self.rejected_by_reason[r["reason"]] = self.rejected_by_reason.get(r["reason"], 0) + n

    def count(self, name: str, value: float = 1) -> None:
        value = value.item() if hasattr(value, "item") else value  # numpy scalars are not JSON
        self.counters[name] = self.counters.get(name, 0) + value

    def check(self, where: str) -> None:
        """Raise if the books do not balance (a bug, never bad input)."""
        if self.input != self.kept + self.dropped + self.rejected:
            raise AssertionError(
                f"{where}: input={self.input} != kept={self.kept} + dropped={self.dropped} + rejected={self.rejected}"
            )

    def to_json(self) -> str:
        d = asdict(self)
        d["rejected_by_reason"] = dict(sorted(d["rejected_by_reason"].items()))
        d["counters"] = dict(sorted(d["counters"].items()))
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ShardStats:
        return cls(**json.loads(text))
