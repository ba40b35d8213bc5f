"""The run directory: where each stage's outputs, stats, logs and completion markers live.

```
<run>/manifest.json  config.resolved.yaml  embeddings/<stem>.parquet  curated/<stem>.parquet  rejects/<stem>.parquet
      stats/<stage>/<stem>.json  stats.json  completions/<stage>/<stem>  failures/<stage>/<stem>.json
      logs/<stage>/  (datatrove's logging dir: per-task logs, stats, rank completions)  .lock (while a run runs)
```
Outputs are named after input shards, never after worker ranks; a shard's completion marker is written after
its outputs, so a rerun skips finished shards and redoes the rest, whatever the number of workers.
``manifest.json`` (:mod:`winnow.core.manifest`) lists the run's shards: readers take the stems from it, never from
a folder listing. ``.lock`` (:mod:`winnow.core.lock`): one writer per run directory.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from winnow.core.errors import CurationError
from winnow.core.io import join_path
from winnow.core.lock import RunLock
from winnow.core.manifest import MANIFEST, Manifest
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
        self._lock: RunLock | None = None  # never pickled: worker processes do not hold it

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

    def local_path(self, *parts: str) -> str:
        """The local file-system path of ``<run>/<parts>`` for tools that need one (datatrove's MinHash steps
        rename and link files); a clear error for a remote run directory."""
        if "file" not in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)):
            raise CurationError(
                f"{self.url}: this step needs a local (or mounted) run directory; use a shared file system path "
                "for io.output"
            )
        return self._p(*parts)

    def write_text(self, rel: str, text: str) -> None:
        """Write a small text file atomically (UTF-8; temp name, then rename)."""
        self.write_bytes(rel, text.encode("utf-8"))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a file atomically (temp name, then rename)."""
        path = self._p(rel)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
        except BaseException:  # a full disk, a signal: no temporary file is left behind
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise
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

        Runs under the run directory's lock (taken here unless this object holds it), so it never removes a live
        run's files: ``run_pipeline`` calls it while it holds the lock, before any task starts (after checking that
        no Slurm job of the run is still queued or running) and after an interrupted local run's workers ended.

        Raises:
            RunDirLocked: another run holds the lock.
        """
        if not self.fs.exists(self.path):
            return []
        if not self.holds_lock:
            with self.lock():
                return self.remove_stale_temps()
        stale = sorted(p for p in self.fs.find(self.path) if _TEMP.search(p.rsplit("/", 1)[-1]))
        for p in stale:
            self.fs.rm(p)
        return stale

    # -- the lock, the manifest, outputs -------------------------------------------------------------------------

    def lock(self) -> RunLock:
        """This run directory's lock (:mod:`winnow.core.lock`), to use as ``with run.lock(): ...``."""
        if self._lock is None:
            self._lock = RunLock(self)
        return self._lock

    @property
    def holds_lock(self) -> bool:
        return self._lock is not None and self._lock.held

    def manifest(self) -> Manifest | None:
        """The run's manifest (its input shards), or ``None`` for a run made before manifests existed.

        Raises:
            CurationError: the file is malformed (the message names it and the key).
        """
        if not self.exists(MANIFEST):
            return None
        return Manifest.parse(self.read_text(MANIFEST), self.url_of(MANIFEST))

    def shard_files(self, folder: str) -> list[str]:
        """The ``<stem>.parquet`` names of the run's shards in ``folder``: the manifest's stems, sorted, whether the
        file exists or not (the caller says what a missing one means); for a run made before manifests, the parquet
        files listed in the folder. A shard removed from the inputs is never among them."""
        manifest = self.manifest()
        if manifest is None:
            return [n for n in self.listdir(folder) if n.endswith(".parquet")]
        return sorted(f"{stem}.parquet" for stem in manifest.stems)

    def write_manifest(self, manifest: Manifest) -> None:
        self.write_text(MANIFEST, manifest.to_json())

    def check_file(self, rel: str) -> str | None:
        """``None`` if ``rel`` exists (and, for parquet, its footer reads), else what is wrong with it."""
        path = self._p(rel)
        if not rel.endswith(".parquet"):
            return None if self.fs.exists(path) else "missing"
        try:
            with self.fs.open(path, "rb") as f:
                pq.read_metadata(f)
        except FileNotFoundError:
            return "missing"
        except (pa.ArrowInvalid, OSError) as e:
            return f"unreadable ({type(e).__name__}: {e})"
        return None

    def remove_outside(self, stems: set[str], folders: dict[str, tuple[str, ...]]) -> list[str]:
        """Remove the per-shard files whose stem is not in ``stems``; returns their paths relative to the run.

        Args:
            stems: the current output names.
            folders: folder (``*`` matches one level: ``buckets/*``) → the suffixes of its per-shard files
                (``("",)`` for files named exactly after the stem, like completion markers). Files whose name ends
                in none of them, and temporary files, are left alone.
        """
        removed = []
        for folder, suffixes in sorted(folders.items()):
            for rel in self._expand(folder):
                for name in self.listdir(rel):
                    if _TEMP.search(name):
                        continue
                    stem = next((name[: len(name) - len(s)] for s in suffixes if name.endswith(s)), None)
                    if stem is not None and stem not in stems and self.fs.isfile(self._p(rel, name)):
                        self.fs.rm(self._p(rel, name))
                        removed.append(f"{rel}/{name}")
        return removed

    def _expand(self, folder: str) -> list[str]:
        """``folder`` with a ``*`` part replaced by every existing sub-folder name there."""
        head, star, tail = folder.partition("*")
        if not star:
            return [folder]
        subs = [n for n in self.listdir(head.rstrip("/")) if self.fs.isdir(self._p(head, n))]
        return [f"{head}{n}{tail}".rstrip("/") for n in subs]

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
