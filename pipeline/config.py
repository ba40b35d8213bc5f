"""Configuration: YAML files validated by pydantic models, overridable from the command line.

Every section is a frozen pydantic model with ``extra="forbid"``: an unknown key, a value of the wrong type or
out of range fails when the config is loaded, before any work, with a message naming the dotted key and what
is allowed. ``load_config`` merges a YAML file, ``--set key.sub=value`` overrides and explicit CLI values, in
that order of precedence (later wins).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from winnow.core.config import IOSection, RunSection, check_seed
from winnow.core.errors import ConfigError
from winnow.core.redact import redact_urls
from winnow.core.rundir import RunDir
from winnow.core.section import Section
from winnow.embedding.section import EmbedSection
from winnow.mixers.config import MixSection
from winnow.pipeline.prune.section import PruneSection
from winnow.scorers.backends import RATERS
from winnow.scorers.llm import LLMSection
from winnow.scorers.prefilter import PrefilterSection
from winnow.scorers.student import StudentSection


class ClusterSection(Section):
    """Spherical k-means over the embeddings (DESIGN §3.2).

    Args:
        backend: ``faiss`` (the reference; GPU FAISS when present) or ``torch`` (GPU machines without GPU FAISS).
        k: number of clusters.
        niter: k-means iterations.
        nredo: run k-means this many times from different initialisations and keep the best objective.
        seed: k-means seed; ``null`` uses ``run.seed``; below 2**31 (FAISS takes a 32-bit signed seed).
        fit_fraction: share of documents in the training sample (chosen by a hash of the id and the seed, so the
            sample does not depend on sharding or workers); every document is assigned afterwards.
        max_points_per_centroid: k-means trains on at most ``k ×`` this many points (FAISS's rule): the ones of
            the sample with the smallest hashes of (seed, id); the fit stage reads only their vectors, so its
            memory is bounded by this cap, not by the corpus.
        fit_max_mib: the k-means sample's size cap in MiB (float32 vectors: ``k × points × dim × 4`` bytes); when
            ``k × max_points_per_centroid`` points would not fit, fewer points per centroid are used, never below
            39 (FAISS's minimum; the fit then warns that the sample is larger). Fewer points make coarser
            centroids (64-128 per centroid are typical); ``null``: no cap. At dim 384 the default of 1024 keeps
            256 points up to k = 2,730 and 69 at k = 10,000.
        device: ``auto``, ``cpu`` or ``cuda``.
        n_buckets: assignments are also written bucketed by ``cluster_id % n_buckets`` so one dedup task holds
            whole clusters.
    """

    backend: Literal["faiss", "torch"] = "faiss"
    k: int = Field(100, ge=1)
    niter: int = Field(20, ge=1)
    nredo: int = Field(1, ge=1)
    seed: int | None = Field(None, ge=0)
    fit_fraction: float = Field(1.0, gt=0.0, le=1.0)
    max_points_per_centroid: int = Field(256, ge=1)
    fit_max_mib: int | None = Field(1024, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    n_buckets: int = Field(16, ge=1, le=65_536)

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int | None) -> int | None:
        return check_seed(v)


class DedupSection(Section):
    """SemDeDup within clusters (DESIGN §3.3).

    Args:
        rank: which member of a group survives: ``hard`` (farthest from the centroid first, the paper's default),
            ``easy`` (closest first) or ``random`` (seeded).
        eps: a document is a duplicate when ``dup_max_sim ≥ 1 − eps``. Changing it reuses the stored similarities.
        eps_sweep: ε values whose kept fraction is reported in ``prune.json`` (from the stored column).
        block_size: tile size of the blocked similarity computation (memory O(block²)).
        backend: ``numpy`` (CPU, the default), ``torch`` (on ``device``) or ``auto`` (torch on CUDA where torch
            sees a GPU, else numpy). Every backend stores the same bits (the canonical similarity, ties to the
            earliest-ranked member), so switching never changes a result, only the speed.
        device: the torch backend's device: ``auto`` (CUDA where present, else the CPU), ``cpu`` or ``cuda``.
        dtype: the torch backend's screening precision: ``float32``, ``bfloat16`` or ``float16``. Candidates are
            rescored exactly whatever it is, so the result is the same; 16-bit screens faster on a GPU but leaves
            more candidates to rescore.
        bucket_dtype: the value type of the vectors in the cluster-sorted copy that assign writes for SemDeDup
            (``buckets/``): ``float32`` (the embeddings' own bits) or ``float16`` (a third of that copy's disk;
            SemDeDup then compares the float16-rounded vectors: similarities moved by at most 1.1e-4 in
            bench/RESULTS.md, so a decision changes only for a pair that close to ``1 − eps``).
        read_buffer_mib: how much of other clusters' vectors a dedup task may hold besides the current cluster's:
            assign packs whole clusters into a bucket file's row groups of about this size divided by the number
            of shards, and a task holds one row group of each shard's file. ``0``: a row group per cluster, so a
            task holds exactly one cluster (but a cluster's rows per shard are few: many small reads, larger files).
        warn_cluster_pairs: warn when one cluster has at least this many pairs (n(n−1)/2; 10⁹ is a cluster of
            about 45,000, some seconds of CPU): its pairwise pass and its vectors dominate its dedup task.
        warn_pair_share: warn when one cluster holds at least this share of its bucket's pairs (and at least 10⁷
            pairs): the bucket's time is mostly that one cluster. Raising ``cluster.k`` splits it.
    """

    rank: Literal["hard", "easy", "random"] = "hard"
    eps: float = Field(0.05, gt=0.0, lt=1.0)
    eps_sweep: list[float] = Field(default_factory=lambda: [0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3])
    block_size: int = Field(2048, ge=16)
    backend: Literal["numpy", "torch", "auto"] = "numpy"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    bucket_dtype: Literal["float32", "float16"] = "float32"
    read_buffer_mib: int = Field(64, ge=0)
    warn_cluster_pairs: int = Field(10**9, ge=1)
    warn_pair_share: float = Field(0.5, gt=0.0, le=1.0)


#: the allowed ``score.backend`` values: ``none`` and the registered rater backends (``winnow strategies`` lists them)
SCORE_BACKENDS = ("none", *RATERS.names())


class ScoreSection(Section):
    """DataMan-style quality and domain scoring (DESIGN §3.6).

    Args:
        backend: ``heuristic`` (default: measurable text proxies, no model), ``llm`` (a DataMan checkpoint or any
            chat model, local or over an OpenAI-compatible endpoint; see ``score.llm``), ``student`` (a small model
            over the stored embeddings, trained on ratings; see ``score.student``) or ``none`` (no scoring).
        domain: heuristic backend: ``auto`` (nearest domain description in embedding space, using the stored
            embeddings), ``embedding`` (same, an error without embeddings) or ``keywords`` (no model).
        llm: the LLM rater's settings (``model`` directory or ``endpoint`` + ``model_name``, batch size,
            concurrency, retries); required when ``backend: llm``.
        student: the student rater's settings (``model_dir`` written by ``winnow train-student``); required when
            ``backend: student``.
    """

    backend: Literal[SCORE_BACKENDS] = "heuristic"
    domain: Literal["auto", "embedding", "keywords"] = "auto"
    llm: LLMSection | None = None
    student: StudentSection | None = None

    @model_validator(mode="after")
    def _llm(self) -> ScoreSection:
        if self.backend == "llm" and self.llm is None:
            raise ValueError("score.backend=llm needs a score.llm section (model: DIR, or endpoint: URL)")
        if self.backend == "student" and self.student is None:
            raise ValueError("score.backend=student needs a score.student section (model_dir: DIR from train-student)")
        return self




def _no_gpu_stages(data: Any, where: str) -> Any:
    """``gpu_stages`` was a hand-kept list; each stage now says whether it wants a GPU (``winnow stages``)."""
    if isinstance(data, dict) and "gpu_stages" in data:
        raise ValueError(
            f"{where}.gpu_stages is no longer a setting: each stage declares whether it wants a GPU for the "
            "current config (`winnow stages` lists them); remove the key"
        )
    return data
_SLURM_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$")


class RaySettings(Section):
    """``executor.kind: ray``: each stage runs as Ray tasks (datatrove ``RayPipelineExecutor``), one per unit.

    Args:
        address: the Ray cluster to connect to: ``null`` (Ray's default: ``$RAY_ADDRESS``, else a cluster started on
            this machine with ``ray start``, else a new local instance), ``auto`` (an existing cluster only),
            ``local`` (always a new local instance) or ``ray://HEAD:10001`` (Ray client). A Ray instance already
            initialised in the calling process is used as it is.
        cpus_per_task: CPUs Ray reserves per task; torch uses as many threads unless ``executor.torch_threads``
            is set.
        gpus_per_task: GPUs Ray reserves per task of the stages that want a GPU (``winnow stages`` shows which: embed
            and fit unless their device is ``cpu``, score for the llm and student raters); other stages reserve none.
        mem_per_cpu_gb: memory Ray reserves per CPU of a task.
        max_concurrent: tasks in flight at once; ``null`` for no limit (the cluster's free resources decide).
    """

    address: str | None = None
    cpus_per_task: float = Field(1, gt=0)
    gpus_per_task: float = Field(0, ge=0)
    mem_per_cpu_gb: float = Field(2, gt=0)
    max_concurrent: int | None = Field(None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        return _no_gpu_stages(data, "executor.ray")


class SlurmSettings(Section):
    """``executor.kind: slurm``: each stage is a Slurm job array (datatrove ``SlurmPipelineExecutor``), chained
    with ``--dependency=afterok`` on the stage before; ``winnow run`` submits the chain and returns.

    Args:
        partition: the partition (required with ``kind: slurm``).
        gpu_partition: the partition of the stages that want a GPU when ``gpus_per_task > 0`` (default:
            ``partition``).
        time: the time limit of one array task (``MM``, ``HH:MM:SS``, ``D-HH:MM:SS``, …).
        cpus_per_task: CPUs per array task; torch uses as many threads unless ``executor.torch_threads`` is set.
        mem_per_cpu_gb: memory per CPU, in GB.
        gpus_per_task: GPUs per array task of the stages that want a GPU (``winnow stages``; other stages ask for
            none).
        max_array_size: tasks per job array, at most the cluster's ``MaxArraySize`` (1001 by default); a stage
            with more tasks is submitted as several arrays, each after the one before.
        max_concurrent: array tasks running at once (``--array=0-N%max_concurrent``); ``null`` for no limit.
        tasks_per_job: units one array task runs one after the other (fewer, longer array tasks).
        qos: the quality of service; ``null`` leaves it to the cluster's default.
        job_name: prefix of the job names (``<job_name>-<stage>``); default ``winnow-<run name>``.
        env_command: shell line run before each task, e.g. ``source /shared/venvs/winnow/bin/activate``.
        srun: start each task with ``srun`` inside its allocation (datatrove's default).
        sbatch_args: extra ``#SBATCH`` directives, e.g. ``{account: proj42, constraint: a100}``. winnow adds
            ``kill-on-invalid-dep: "yes"`` so the rest of a chain is cancelled when a stage fails.
    """

    partition: str | None = Field(None, min_length=1)
    gpu_partition: str | None = Field(None, min_length=1)
    time: str = "24:00:00"
    cpus_per_task: int = Field(1, ge=1)
    mem_per_cpu_gb: int = Field(2, ge=1)
    gpus_per_task: int = Field(0, ge=0)
    max_array_size: int = Field(1001, ge=1)
    max_concurrent: int | None = Field(None, ge=1)
    tasks_per_job: int = Field(1, ge=1)
    qos: str | None = None
    job_name: str | None = Field(None, min_length=1)
    env_command: str | None = None
    srun: bool = True
    sbatch_args: dict[str, str | int] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _removed(cls, data: Any) -> Any:
        return _no_gpu_stages(data, "executor.slurm")

    @field_validator("time", mode="before")
    @classmethod
    def _time(cls, v: Any) -> str:
        if not isinstance(v, str):  # YAML reads 2:00:00 as the number 7200 and 30 as 30
            raise ValueError(f"give the time limit as a quoted string (time: '2:00:00', time: '30'), not {v!r}")
        if not _SLURM_TIME.match(v):
            raise ValueError("not a Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)")
        return v

    @field_validator("sbatch_args")
    @classmethod
    def _sbatch_args(cls, v: dict[str, str | int]) -> dict[str, str | int]:
        bad = sorted(k for k in v if k.lstrip("-") in ("array", "dependency", "output", "error"))
        if bad:
            raise ValueError(f"{bad} are set by winnow; allowed: any other sbatch option")
        return {k.lstrip("-"): val for k, val in v.items()}


class ExecutorSection(Section):
    """How stages are executed (datatrove executors; one task per unit: a shard, a cluster bucket or a global step).

    Args:
        kind: ``local`` (``LocalPipelineExecutor``, this machine), ``ray`` (a Ray cluster, see ``executor.ray``) or
            ``slurm`` (job arrays, see ``executor.slurm``). Every kind writes the same outputs.
        workers: ``local``: shards processed at once (processes); ``--workers/-j`` replaces it. (``ray`` and
            ``slurm`` use ``max_concurrent`` of their section.)
        start_method: multiprocessing start method for ``workers > 1``.
        torch_threads: CPU threads per task for torch; ``null``: ``local`` divides the machine's cores by
            ``workers``, ``ray``/``slurm`` use ``cpus_per_task``.
        ray: settings of ``kind: ray``.
        slurm: settings of ``kind: slurm``.
    """

    kind: Literal["local", "ray", "slurm"] = "local"
    workers: int = Field(1, ge=1, le=4096)
    start_method: Literal["forkserver", "spawn", "fork"] = "forkserver"
    torch_threads: int | None = Field(None, ge=1)
    ray: RaySettings = Field(default_factory=RaySettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)

    @model_validator(mode="after")
    def _kind_settings(self) -> ExecutorSection:
        if self.kind == "slurm" and self.slurm.partition is None:
            raise ValueError("executor.kind=slurm needs executor.slurm.partition")
        return self


class WinnowConfig(Section):
    """The whole configuration.

    Args:
        run: run-wide settings (name, seed).
        io: where shards come from and go, and how they are read.
        embed: the embedding model and how it runs.
        cluster: spherical k-means over the embeddings.
        dedup: SemDeDup within clusters.
        score: DataMan-style quality and domain scoring (rater backend).
        prune: turning scores into keep decisions (strategy and target).
        mix: the mixture planner (scaling law, pools, budget, end-of-training upsampling).
        executor: where the stages run: local processes, Ray or Slurm (datatrove executors).
        prefilter: pre-filters before embedding (language ID, datatrove's rule filters, exact and MinHash dedup);
            absent: none run. ``prefilter: {}`` turns every part on with its defaults.
    """

    run: RunSection = Field(default_factory=RunSection)
    io: IOSection = Field(default_factory=IOSection)
    embed: EmbedSection = Field(default_factory=EmbedSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    dedup: DedupSection = Field(default_factory=DedupSection)
    score: ScoreSection = Field(default_factory=ScoreSection)
    prune: PruneSection = Field(default_factory=PruneSection)
    mix: MixSection = Field(default_factory=MixSection)
    executor: ExecutorSection = Field(default_factory=ExecutorSection)
    prefilter: PrefilterSection | None = None

    @property
    def cluster_seed(self) -> int:
        return self.run.seed if self.cluster.seed is None else self.cluster.seed

    def fingerprint(self, keys: list[str] | None = None, extra: Any = None) -> str:
        """A short hash of the config values that change outputs.

        Args:
            keys: dotted section or field names to include (``["io", "embed", "dedup.rank"]``); ``None`` for
                every section that changes outputs (not the executor, not credentials, not names).
            extra: anything else JSON-serialisable to mix in (e.g. the list of input shards).
        """
        # the mixer reads the curated shards and writes only the plan: its settings never change a stage's outputs
        data = self.model_dump(mode="json", exclude={"executor": True, "mix": True, "run": {"name"}})
        if data.get("prefilter") is None:  # absent: the fingerprints of runs made before pre-filters existed
            data.pop("prefilter", None)
        for field in ("storage_options", "output", "input"):  # inputs count as the resolved shard list
            data["io"].pop(field, None)
        for field in ("prefetch", "tokenize_workers", "tokenizer"):  # how tokens are made, never which
            data["embed"].pop(field, None)
        if keys is not None:
            picked: dict[str, Any] = {}
            for key in sorted(keys):
                section, _, name = key.partition(".")
                value = data.get(section, {})
                picked[key] = value.get(name) if name else value
            data = picked
        blob = json.dumps({"config": data, "extra": extra}, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self, extra: dict[str, Any] | None = None) -> str:
        """The resolved config as YAML, with secrets in ``storage_options`` and credentials in URLs redacted."""
        data = self.model_dump(mode="json")
        data["io"]["storage_options"] = _redact(data["io"]["storage_options"])
        data = redact_urls(data)  # https://user:password@host/... → https://<redacted>@host/...
        if extra:
            data = {**extra, **data}
        return yaml.safe_dump(data, sort_keys=False)


_SECRET = re.compile(
    r"(key|secret|token|password|passwd|credential|auth|connection_string|sas|signature|cookie|session)", re.IGNORECASE
)


def _redact(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: ("<redacted>" if _SECRET.search(str(k)) else _redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` into (["a", "b", "c"], value); the value is read as YAML (``128`` is an int)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, _, raw = item.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from e
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(f"override {'.'.join(parts)}: {'.'.join(parts[: i + 1])} is not a section")
        node = nxt
    node[parts[-1]] = value


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at ``loc`` (the parent of an unknown key), for error messages."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return sorted(getattr(current, "model_fields", {}).keys())


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(WinnowConfig, loc[:-1])
            lines.append(f"  {key}: unknown key; allowed keys here: {', '.join(allowed)}")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  {key}: {e['msg']}{got_s}")
    return "\n".join(lines)


#: config files larger than this are refused (a config is a few KiB; this bounds what a bad file can cost)
MAX_CONFIG_BYTES = 1 << 20


#: top-level sections that are off when absent or null
_OPTIONAL_SECTIONS = ("prefilter",)


class _NoAliasLoader(yaml.SafeLoader):
    """A SafeLoader that refuses anchors and aliases: ``&a`` / ``*a`` let a few hundred bytes expand into
    gigabytes (a "billion laughs"), and a winnow config never needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            line = event.start_mark.line + 1
            raise ConfigError(
                f"{self.name}: line {line}: YAML anchors and aliases (&name, *name) are not allowed in a config "
                "file; write the values out"
            )
        return super().compose_node(parent, index)


def _read_yaml_file(p: Path) -> Any:
    """Parse a config file: UTF-8, at most ``MAX_CONFIG_BYTES``, plain YAML without anchors or aliases."""
    try:
        size = p.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: config file too large ({size} bytes; at most {MAX_CONFIG_BYTES} bytes)")
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config file: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: config file too large (more than {MAX_CONFIG_BYTES} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: not UTF-8 text (invalid byte 0x{raw[e.start]:02x} at byte offset {e.start}); save it as UTF-8"
        ) from None
    loader = _NoAliasLoader(text)
    loader.name = str(p)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    finally:
        loader.dispose()


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    cli_values: dict[str, Any] | None = None,
) -> WinnowConfig:
    """Load and validate a config.

    Args:
        path: a YAML file, or ``None`` for the defaults.
        overrides: ``key.sub=value`` strings (``--set``), applied after the file.
        cli_values: dotted keys to values from dedicated CLI flags (``io.output``, ``executor.workers``),
            applied last; ``None`` values are ignored.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown / mistyped / out of range.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = _read_yaml_file(p)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        # a section whose keys are all commented out loads as None: treat it as empty; an optional section (off by
        # default: prefilter) stays off when null (`prefilter: {}` turns it on)
        data = {k: ({} if v is None and k not in _OPTIONAL_SECTIONS else v) for k, v in loaded.items()}
    for item in overrides or []:
        parts, value = parse_override(item)
        apply_override(data, parts, value)
        source += f" + --set {item}"
    for key, value in (cli_values or {}).items():
        if value is not None:
            apply_override(data, key.split("."), value)
    try:
        return WinnowConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None


RESOLVED_CONFIG = "config.resolved.yaml"


def load_run_config(run: RunDir, overrides: list[str] | None = None) -> WinnowConfig:
    """A run's own config (``config.resolved.yaml``, written by every ``winnow run``) with ``--set`` overrides.

    ``winnow mix`` and ``winnow report`` read it unless given ``-c``, so a run made with, say, a custom
    ``io.text_field`` is read with it. Redacted storage options are dropped (credentials come from the environment).

    Raises:
        ConfigError: not a run directory, or a bad override (the message names the key).
    """
    if not run.exists(RESOLVED_CONFIG):
        raise ConfigError(f"{run.url}: not a winnow run directory (no {RESOLVED_CONFIG}); run `winnow run` first")
    try:
        data = yaml.safe_load(run.read_text(RESOLVED_CONFIG)) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{run.url_of(RESOLVED_CONFIG)}: not valid YAML: {e}") from e
    data.pop("winnow_version", None)
    data.pop("config_hash", None)
    io_section = data.setdefault("io", {})
    io_section["storage_options"] = {
        k: v for k, v in (io_section.get("storage_options") or {}).items() if v != "<redacted>"
    }
    source = run.url_of(RESOLVED_CONFIG)
    for item in overrides or []:
        parts, value = parse_override(item)
        apply_override(data, parts, value)
        source += f" + --set {item}"
    try:
        return WinnowConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
