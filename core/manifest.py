"""The run manifest, ``<run>/manifest.json``: the input shards of the latest invocation, the only list anyone reads.

``run_pipeline`` writes it before any stage runs: for each input shard its URL, output name (stem), format and
fingerprint (:func:`winnow.core.io.shard_fingerprint`), plus the config hash. Every per-shard file of the run
directory is named after a stem of the manifest (the runner removes the others at start-up), so readers of a run
(the report, the mixer, the student trainer) take the shards from here, never by listing a folder::

    manifest = RunDir(url).manifest()          # None for a run made before manifests existed
    for stem in manifest.stems: ...            # curated/<stem>.parquet, embeddings/<stem>.parquet ...
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from winnow.core.errors import CurationError
from winnow.core.io import Shard

__all__ = ["MANIFEST", "Manifest", "ManifestShard"]

#: the manifest's name in the run directory
MANIFEST = "manifest.json"


class ManifestShard(BaseModel):
    """One input shard of the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="The input as fsspec reads it (as given: relative paths stay relative).")
    stem: str = Field(description="The output name: curated/<stem>.parquet, embeddings/<stem>.parquet ...")
    format: Literal["jsonl", "parquet"] = Field(description="How the input is parsed.")
    compression: str | None = Field(None, description="gzip, zstd or null.")
    fingerprint: str = Field(description="Size and content identity of the input when the run started.")


class Manifest(BaseModel):
    """The run's inputs: what ``run_pipeline`` processed in its latest invocation."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(1, description="Format version of this file.")
    winnow_version: str = Field(description="The winnow that wrote it.")
    config_hash: str = Field(description="config_hash of config.resolved.yaml at the time.")
    shards: list[ManifestShard] = Field(description="The input shards, sorted by URL.")

    @property
    def stems(self) -> list[str]:
        """The output names, in the manifest's order."""
        return [s.stem for s in self.shards]

    def to_shards(self) -> list[Shard]:
        """The shards as :class:`winnow.core.io.Shard` (fingerprints included)."""
        return [Shard(url=s.url, stem=s.stem, format=s.format, compression=s.compression,
                      fingerprint=s.fingerprint) for s in self.shards]  # fmt: skip

    @classmethod
    def from_shards(cls, shards: list[Shard], *, config_hash: str, winnow_version: str) -> Manifest:
        entries = [
            ManifestShard(url=s.url, stem=s.stem, format=s.format, compression=s.compression,
                          fingerprint=s.fingerprint)
            for s in shards
        ]  # fmt: skip
        return cls(winnow_version=winnow_version, config_hash=config_hash, shards=entries)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"

    @classmethod
    def parse(cls, text: str, where: str) -> Manifest:
        """Parse a manifest; a malformed one raises ``CurationError`` naming ``where`` and the key."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as e:
            first = e.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise CurationError(
                f"{where}: not a valid run manifest ({key}: {first['msg']}); rerun `winnow run` to rewrite it"
            ) from None
