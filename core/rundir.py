"""The run directory: where each stage's outputs, stats, logs and completion markers live.

```
<run>/config.resolved.yaml  embeddings/<stem>.parquet  curated/<stem>.parquet  rejects/<stem>.parquet
      stats/<stage>/<stem>.json  stats.json  completions/<stage>/<stem>  failures/<stage>/<stem>.json
      logs/<stage>/  (datatrove's logging dir: per-task logs, stats, rank completions)
```
Outputs are named after input shards, never after worker ranks; a shard's completion marker is written after
its outputs, so a rerun skips finished shards and redoes the rest, whatever the number of workers.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from fsspec.core import url_to_fs
from winnow.core.io import join_path
from winnow.core.stats import ShardStats

#: temporary names of AtomicParquetWriter and RunDir.write_bytes: ``<name>.tmp-<8 hex>``
_TEMP = re.compile(r"\.tmp-[0-9a-f]{8}$")


class RunDir:
    """Paths and small-file I/O inside a run directory (local or fsspec URL).

    Args:
        url: the run directory.
        storage_options: fsspec options for remote run directories.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = url.rstrip("/")
        self.storage_options = storage_options or {}
        self.fs, self.path = url_to_fs(self.url, **self.storage_options)

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])  # type: ignore[misc]

    def url_of(self, *parts: str) -> str:
        return join_path(self.url, *parts)

    def _p(self, *parts: str) -> str:
        return join_path(self.path, *parts)

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self._p(*parts))

    def write_text(self, rel: str, text: str) -> None:
        """Write a small text file atomically (UTF-8; temp name, then rename)."""
        self.write_bytes(rel, text.encode("utf-8"))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a file atomically (temp name, then rename)."""
        path = self._p(rel)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, path)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self._p(rel), "rb") as f:
            return f.read()

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def remove(self, rel: str, recursive: bool = False) -> None:
        path = self._p(rel)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=recursive)

    def remove_stale_temps(self) -> list[str]:
        """Remove the temporary files that killed processes left behind; returns their paths.

        Only safe while no task of this run is running (``run_pipeline`` calls it before starting any, after
        checking that no Slurm job of the run is still queued or running).
        """
        if not self.fs.exists(self.path):
            return []
        stale = sorted(p for p in self.fs.find(self.path) if _TEMP.search(p.rsplit("/", 1)[-1]))
        for p in stale:
            self.fs.rm(p)
        return stale

    def listdir(self, rel: str) -> list[str]:
        path = self._p(rel)
        if not self.fs.exists(path):
            return []
        return sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False))

    # -- per-shard markers ---------------------------------------------------------------------------------------

    def is_complete(self, stage: str, unit: str, fingerprint: str | None = None) -> bool:
        """The unit's marker exists (and, if given, was written under the same config ``fingerprint``)."""
        rel = f"completions/{stage}/{unit}"
        if not self.exists(rel):
            return False
        return fingerprint is None or self.read_text(rel).strip() == fingerprint

    def mark_complete(self, stage: str, unit: str, fingerprint: str = "") -> None:
        self.write_text(f"completions/{stage}/{unit}", fingerprint)

    def clear_completions(self, stage: str) -> None:
        self.remove(f"completions/{stage}", recursive=True)

    def write_stats(self, stage: str, stem: str, stats: ShardStats) -> None:
        self.write_text(f"stats/{stage}/{stem}.json", stats.to_json())

    def read_stats(self, stage: str, units: list[str]) -> ShardStats:
        """The sum of the per-unit stats of ``stage`` over ``units`` (those that exist)."""
        total = ShardStats()
        for stem in units:
            if self.exists("stats", stage, f"{stem}.json"):
                total = total + ShardStats.from_json(self.read_text(f"stats/{stage}/{stem}.json"))
        return total

    def write_failure(self, stage: str, stem: str, info: dict[str, Any]) -> None:
        self.write_text(f"failures/{stage}/{stem}.json", json.dumps(info, indent=2))

    def failures(self, stage: str) -> dict[str, dict[str, Any]]:
        out = {}
        for name in self.listdir(f"failures/{stage}"):
            if name.endswith(".json"):
                out[name[: -len(".json")]] = json.loads(self.read_text(f"failures/{stage}/{name}"))
        return out
