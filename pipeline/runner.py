"""Running stages: prepare the run directory, execute each stage on a datatrove executor, merge stats.

``run_pipeline`` is what ``winnow run`` and every stage subcommand call. Each stage runs as a datatrove pipeline
with one task per unit (a shard, a cluster bucket or a global step) on the executor ``executor.kind`` names:
``local`` (``LocalPipelineExecutor``) and ``ray`` (``RayPipelineExecutor``) run the stages one after the other and
return when they are done; ``slurm`` (``SlurmPipelineExecutor``) submits one job array per stage, each depending
(``afterok``) on the one before, records the job ids in ``slurm_jobs.json`` and returns at once; a later
``winnow run`` with the same config and output finds the units done, submits nothing and collects the stats (or
resubmits what is missing). Resumption rests on winnow's per-unit markers ``completions/<stage>/<unit>`` alone
(datatrove runs exactly the units they call incomplete): a marker holds the fingerprint of the config values its
stage uses and of its inputs (``manifest.json``), and is trusted only while the unit's output files read.

A run holds the run directory's lock throughout (one writer per run directory); before any stage it writes the
manifest and removes the outputs of shards not in it (``_prepare``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import multiprocess
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from datatrove.utils.stats import PipelineStats
from loguru import logger
from tqdm.auto import tqdm

import winnow
from winnow.core import logging as logs
from winnow.core.cli_util import check_interrupted
from winnow.core.errors import ConfigError, CurationError, Interrupted, RejectsFoundError, ShardError
from winnow.core.io import Shard, fingerprint_shards, list_shards
from winnow.core.logging import setup_logging  # noqa: F401 (re-exported for callers of the runner)
from winnow.core.manifest import Manifest
from winnow.core.rundir import RunDir
from winnow.core.stats import ShardStats
from winnow.pipeline.config import WinnowConfig
from winnow.pipeline.stages import STAGES, ShardStage, Stage

#: the worker number of a pool process (set by ``_init_worker``): its datatrove ``local_rank``
_WORKER_INDEX = {"local_rank": 0}


def _init_worker(counter: Any) -> None:
    """A pool worker's start: SIGINT is the main process's business (a Ctrl-C reaches the whole process group, and
    the main process stops the pool), SIGTERM ends the worker at once (``Pool.terminate``); a distinct worker number.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with counter.get_lock():
        _WORKER_INDEX["local_rank"] = counter.value
        counter.value += 1


class _QuietLogFile:
    """A task's log file that stops writing once its disk is full: loguru would otherwise print a traceback for
    every later line. The console still shows every error, and the unit's failure names the full disk."""

    def __init__(self, f: Any):
        self._f, self._full = f, False

    def _guard(self, call: Any, *args: Any) -> Any:
        if self._full:
            return None
        try:
            return call(*args)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            self._full = True
            return None

    def write(self, text: str) -> Any:
        return self._guard(self._f.write, text)

    def flush(self) -> None:
        self._guard(self._f.flush)

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise

    def __enter__(self) -> _QuietLogFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._f, name)


class _LogFolder:
    """datatrove's logging folder, whose files (task logs, per-rank stats and completions, executor.json) survive a
    full disk (:class:`_QuietLogFile`): they are informative only, winnow's own markers and stats are the books."""

    def __init__(self, folder: Any):
        self._folder = folder

    def open(self, path: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = self._folder.open(path, mode, *args, **kwargs)
        return _QuietLogFile(f) if any(c in mode for c in "wa") else f

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._folder, name)


class WinnowLocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor, with task logs kept in files and the console left to winnow's log level.

    ``run`` is winnow's own: one worker runs the tasks in this process, more run them in a process pool whose
    workers ignore SIGINT; no ``multiprocess.Manager`` server process is started. An exception in the main process
    (``Interrupted`` by SIGINT/SIGTERM, a ``KeyboardInterrupt``) terminates the pool's workers and joins them before
    it propagates, so no process of the run outlives it.
    """

    def __init__(self, *args: Any, log_level: str = "WARNING", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.log_level = log_level
        self.logging_dir = _LogFolder(self.logging_dir)  # task logs that survive a full disk

    def run(self) -> PipelineStats:
        self._launched = True
        self.save_executor_as_json()
        ranks = self.get_incomplete_ranks(range(self.local_rank_offset, self.local_rank_offset + self.local_tasks))
        if self.workers == 1:
            stats = self._run_in_process(ranks)
        else:
            ctx = multiprocess.get_context(self.start_method)
            counter = ctx.Value("i", 0)
            with ctx.Pool(self.workers, initializer=_init_worker, initargs=(counter,)) as pool:
                stats = list(pool.imap_unordered(self._run_in_worker, ranks))
        total = sum(stats, start=PipelineStats())
        try:
            with self.logging_dir.open("stats.json", "wt") as f:
                total.save_to_disk(f)
        except OSError as e:  # datatrove's merged stats are informative only; winnow's own stats are the books
            if e.errno != errno.ENOSPC:
                raise
        return total

    def _run_in_process(self, ranks: list[int]) -> list[PipelineStats]:
        pipeline, stats = self.pipeline, []
        try:
            for rank in ranks:
                self.pipeline = deepcopy(pipeline)  # as datatrove does: each task starts from the steps as built
                stats.append(self._run_for_rank(rank))
        finally:
            self.pipeline = pipeline
        return stats

    def _run_in_worker(self, rank: int) -> PipelineStats:
        return self._run_for_rank(rank, _WORKER_INDEX["local_rank"])

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):  # type: ignore[override]
        logs._LOG_LEVEL["level"] = self.log_level
        # local_rank > 0 makes datatrove log only errors to the console; its per-task log file keeps everything
        console_rank = local_rank if self.log_level in ("INFO", "DEBUG") else max(1, local_rank)
        try:
            return super()._run_for_rank(rank, console_rank, node_rank)
        finally:
            logs.apply_logging()  # datatrove resets loguru to DEBUG on stderr after each task


class WinnowSlurmExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor without its extra ``merge_stats`` job per stage: winnow merges its own per-unit
    stats into ``stats.json`` when a later ``winnow run`` collects the run."""

    def launch_merge_stats(self) -> None:
        pass


class SbatchJobIds:
    """A ``job_id_retriever`` for datatrove's Slurm executor that also remembers every job id ``sbatch`` printed
    (a stage with more tasks than ``max_array_size`` is submitted as several arrays)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, sbatch_output: str) -> str:
        job_id = sbatch_output.split()[-1].split(";")[0]  # "Submitted batch job 123" (or --parsable "123;cluster")
        self.ids.append(job_id)
        return job_id


class SlurmJobsActive(CurationError):
    """The Slurm jobs last submitted for this run directory are still queued or running."""


def task_config(cfg: WinnowConfig) -> WinnowConfig:
    """``cfg`` as a task runs it: with ``kind: ray``/``slurm`` and no ``executor.torch_threads``, torch gets the
    task's ``cpus_per_task`` threads (not the node's cores). The executor section changes no output."""
    ex = cfg.executor
    if ex.kind == "local" or ex.torch_threads is not None:
        return cfg
    cpus = ex.ray.cpus_per_task if ex.kind == "ray" else ex.slurm.cpus_per_task
    return cfg.model_copy(update={"executor": ex.model_copy(update={"torch_threads": max(1, int(cpus))})})


def ray_init(cfg: WinnowConfig) -> bool:
    """Connect to (or start) the Ray instance of ``executor.ray.address`` unless Ray is already initialised in this
    process; return whether this call initialised it (the caller then shuts it down)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("executor.kind=ray needs Ray: pip install 'winnow[ray]' (or pip install ray)") from None
    if ray.is_initialized():
        return False
    ray.init(address=cfg.executor.ray.address)
    return True


def build_executor(stage: Stage, cfg: WinnowConfig, run: RunDir, n_tasks: int, depends_job_id: str | None = None):
    """The datatrove executor of ``executor.kind`` for one stage: ``n_tasks`` tasks, logs under ``logs/<stage>``.

    Every task runs (``skip_completed=False``): the runner hands over only the units that are not complete by
    winnow's own markers, so datatrove's per-rank completion files are never consulted.

    Args:
        depends_job_id: ``slurm`` only: the job this stage's array waits for (``--dependency=afterok:ID``).
    """
    kind = cfg.executor.kind
    logging_dir = run.url_of("logs", stage.name)
    if kind == "local":
        return WinnowLocalExecutor(
            pipeline=[stage],
            tasks=n_tasks,
            workers=min(cfg.executor.workers, n_tasks),
            logging_dir=logging_dir,
            skip_completed=False,
            start_method=cfg.executor.start_method,
            log_level=logs.log_level(),
        )
    if kind == "ray":
        ray_init(cfg)
        from datatrove.executor import RayPipelineExecutor

        rs = cfg.executor.ray
        logger.disable("datatrove.executor.ray")  # a warning per stage that a local logging_dir must be shared
        try:
            return RayPipelineExecutor(
                pipeline=[stage],
                tasks=n_tasks,
                workers=rs.max_concurrent or -1,
                logging_dir=logging_dir,
                skip_completed=False,
                cpus_per_task=rs.cpus_per_task,
                gpus_per_task=rs.gpus_per_task if stage.wants_gpu(cfg) else 0,
                mem_per_cpu_gb=rs.mem_per_cpu_gb,
            )
        finally:
            logger.enable("datatrove.executor.ray")
    if kind == "slurm":
        ss = cfg.executor.slurm
        gpu = ss.gpus_per_task > 0 and stage.wants_gpu(cfg)
        prefix = ss.job_name or f"winnow-{cfg.run.name or os.path.basename(run.path.rstrip('/')) or 'run'}"
        return WinnowSlurmExecutor(
            pipeline=[stage],
            tasks=n_tasks,
            time=ss.time,
            partition=(ss.gpu_partition or ss.partition) if gpu else ss.partition,
            cpus_per_task=ss.cpus_per_task,
            mem_per_cpu_gb=ss.mem_per_cpu_gb,
            gpus_per_task=ss.gpus_per_task if gpu else 0,
            workers=ss.max_concurrent or -1,
            job_name=f"{prefix}-{stage.name}",
            qos=ss.qos,
            env_command=ss.env_command,
            sbatch_args={"kill-on-invalid-dep": "yes", **ss.sbatch_args},
            max_array_size=ss.max_array_size,
            depends_job_id=depends_job_id,
            job_id_retriever=SbatchJobIds(),
            logging_dir=logging_dir,
            skip_completed=False,
            tasks_per_job=ss.tasks_per_job,
            with_srun=ss.srun,
        )
    raise ConfigError(f"executor.kind={kind!r} is not supported; allowed: local, ray, slurm")  # pragma: no cover


SLURM_JOBS = "slurm_jobs.json"


def active_slurm_jobs(job_ids: list[str]) -> dict[str, str]:
    """Which of ``job_ids`` ``squeue`` still lists (pending, running, completing …), with their state."""
    if not job_ids:
        return {}
    cmd = ["squeue", "--noheader", "--jobs", ",".join(job_ids), "--format", "%i %T"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise CurationError(f"cannot ask Slurm whether the jobs of this run are done ({' '.join(cmd)}): {e}") from e
    if proc.returncode != 0:
        if "invalid job id" in proc.stderr.lower():  # every job has left the queue
            return {}
        raise CurationError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    wanted, active = set(job_ids), {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts and parts[0].split("_")[0] in wanted:
            active.setdefault(parts[0].split("_")[0], parts[1] if len(parts) > 1 else "?")
    return active


def _check_slurm_chain(run: RunDir) -> None:
    """Refuse to submit while jobs of the chain submitted last for this run directory are in the queue."""
    if not run.exists(SLURM_JOBS):
        return
    try:
        jobs: dict[str, list[str]] = json.loads(run.read_text(SLURM_JOBS))["jobs"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return
    active = active_slurm_jobs([j for ids in jobs.values() for j in ids])
    if active:
        listing = ", ".join(f"{stage} {j} ({active[j]})" for stage, ids in jobs.items() for j in ids if j in active)
        raise SlurmJobsActive(
            f"{run.url}: the Slurm jobs submitted for this run are still queued or running: {listing}. Rerun "
            f"`winnow run` once they are done to collect the results (or cancel them: scancel {' '.join(active)})"
        )


@dataclass
class RunResult:
    """What a run did: merged stats per stage, shards, failures, wall time."""

    run_dir: str
    shards: list[Shard]
    stages: dict[str, ShardStats] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    #: ``executor.kind: slurm``: the job ids submitted per stage (empty when everything was done already)
    jobs: dict[str, list[str]] = field(default_factory=dict)
    #: per stage, the units this invocation ran (the others were reused from an earlier run)
    ran: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return max((s.rejected for s in self.stages.values()), default=0)

    @property
    def stems(self) -> list[str]:
        return [s.stem for s in self.shards]


def _progress_monitor(run: RunDir, stage: str, stems: list[str], enabled: bool):
    """A main-process bar over shards, fed by polling completion markers (works with any number of workers)."""
    stop = threading.Event()
    if not enabled:
        return stop, None
    bar = tqdm(total=len(stems), desc=f"{stage}", unit="unit", leave=True)
    wanted = set(stems)

    def poll() -> None:
        while not stop.wait(0.5):
            done = len(wanted.intersection(run.listdir(f"completions/{stage}")))
            bar.n = done
            bar.refresh()

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    return stop, (t, bar, wanted)


def prepare_run_dir(cfg: WinnowConfig, run: RunDir) -> None:
    """Write ``config.resolved.yaml`` (the config of the latest invocation; each stage's completion markers hold
    the fingerprint of the config values it depends on, so a changed value redoes exactly the stages it affects)."""
    header = {"winnow_version": winnow.__version__, "config_hash": cfg.fingerprint()}
    run.write_text("config.resolved.yaml", cfg.to_yaml(extra=header))


def run_pipeline(
    cfg: WinnowConfig,
    stages: list[str],
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    fail_on_reject: bool = False,
) -> RunResult:
    """Run ``stages`` (names from ``STAGES``, in order) over the inputs of ``cfg`` into ``cfg.io.output``.

    The run directory's lock (``<run>/.lock``, :mod:`winnow.core.lock`) is held from start to end: a second run on
    the same directory fails at once. Before any stage, ``manifest.json`` records the input shards with their
    fingerprints (completion markers hold them: a grown or replaced shard is redone, and every global step after
    it) and the outputs of shards no longer in it are removed. A unit whose marker is current but whose output file
    is missing or unreadable is redone. On ``Interrupted`` (SIGINT/SIGTERM, see ``winnow.core.cli_util``) or
    ``KeyboardInterrupt`` the local executor's processes are ended, temporary files removed and the lock released
    before the exception propagates.

    Raises:
        ConfigError: bad inputs or a run directory made by another config.
        RunDirLocked: another run holds the run directory.
        ShardError: some shards failed (after every other shard of the stage finished); they are listed.
        RejectsFoundError: ``fail_on_reject`` and some input was rejected.
    """
    _check_request(cfg, stages)
    t0 = time.perf_counter()
    shards = list_shards(cfg.io.input, cfg.io.storage_options)
    _check_output_outside_inputs(cfg, shards)
    run = RunDir(cfg.io.output, cfg.io.storage_options)
    with run.lock():
        try:
            shards = _prepare(cfg, run, shards)
            cfg = task_config(cfg)
            ctx = _RunContext(cfg, run, shards, overwrite, sys.stderr.isatty() if progress is None else progress)
            _run_stages(ctx, stages)
        except (Interrupted, KeyboardInterrupt):
            _clean_up_interrupted(cfg, run)
            raise
        result = ctx.result
        result.seconds = time.perf_counter() - t0
        write_stats_json(run, result, others=_other_stages_stats(ctx))
    if result.jobs:
        _record_slurm_jobs(run, result.jobs)
        return result
    if fail_on_reject and result.rejected:
        raise RejectsFoundError(
            f"{result.rejected} input record(s) rejected (--fail-on-reject); see {run.url_of('rejects')}"
        )
    return result


@dataclass
class _RunContext:
    """What every stage of one ``run_pipeline`` call shares."""

    cfg: WinnowConfig
    run: RunDir
    shards: list[Shard]
    overwrite: bool
    progress: bool
    result: RunResult = field(init=False)
    #: slurm: the job the next stage's array depends on
    last_job: str | None = None

    def __post_init__(self) -> None:
        self.result = RunResult(run_dir=self.run.url, shards=self.shards)

    @property
    def in_process(self) -> bool:
        return self.cfg.executor.kind == "local" and self.cfg.executor.workers == 1


def _check_request(cfg: WinnowConfig, stages: list[str]) -> None:
    if not cfg.io.output:
        raise ConfigError("no output given: pass --output DIR or set io.output in the config")
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; allowed: {', '.join(STAGES)}")


def _local_path(url: str) -> str | None:
    """The real local path of ``url``, or ``None`` for a remote URL."""
    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url:
        return None
    return os.path.realpath(os.path.expanduser(url))


def _is_under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_output_outside_inputs(cfg: WinnowConfig, shards: list[Shard]) -> None:
    """Refuse a run directory inside an input folder (or matched by an input glob): the next run would read
    winnow's own outputs (curated/, embeddings/, rejects/) as input. Local paths only."""
    out = _local_path(str(cfg.io.output))
    if out is None:
        return
    why = "the next run would read winnow's own outputs as input; choose an output outside the inputs"
    for pattern in cfg.io.input:
        folder = _local_path(pattern)
        if folder is None:
            continue
        magic = any(c in pattern for c in "*?[")
        if magic and "**" in pattern:  # a recursive glob matches everything below its fixed prefix
            folder = _local_path(pattern.split("**", 1)[0].rstrip("/") or ".")
        elif magic or not os.path.isdir(folder):
            continue
        if folder is not None and _is_under(out, folder):
            raise ConfigError(f"the output {cfg.io.output!r} is inside the input {pattern!r}: {why}")
    for shard in shards:
        path = _local_path(shard.url)
        if path is not None and _is_under(path, out):
            raise ConfigError(f"the input shard {shard.url!r} lies inside the output {cfg.io.output!r}: {why}")


def _run_stages(ctx: _RunContext, stages: list[str]) -> None:
    started_ray = ctx.cfg.executor.kind == "ray" and ray_init(ctx.cfg)
    try:
        for name in stages:
            check_interrupted()  # a signal whose exception was swallowed (see winnow.core.cli_util) stops here
            _run_stage(ctx, name)
    finally:
        if started_ray:
            import ray  # only with executor.kind=ray (an optional extra)

            ray.shutdown()


def _prepare(cfg: WinnowConfig, run: RunDir, shards: list[Shard]) -> list[Shard]:
    """Refuse a queued Slurm chain, write the resolved config and the manifest, remove the outputs of shards not in
    it and the temporary files of killed attempts; return the shards with their fingerprints (under the lock)."""
    if cfg.executor.kind == "slurm":
        _check_slurm_chain(run)
    prepare_run_dir(cfg, run)
    shards = fingerprint_shards(shards, cfg.io.storage_options)
    run.write_manifest(Manifest.from_shards(shards, config_hash=cfg.fingerprint(), winnow_version=winnow.__version__))
    removed = run.remove_outside({s.stem for s in shards}, shard_output_folders())
    if removed:
        more = f" and {len(removed) - 5} more" if len(removed) > 5 else ""
        logger.warning(
            f"removed {len(removed)} output file(s) of shards no longer among the inputs (manifest.json): "
            f"{', '.join(removed[:5])}{more}"
        )
    stale = run.remove_stale_temps()  # left by a killed earlier attempt; nothing of this run is running now
    if stale:
        logger.info(f"removed {len(stale)} temporary file(s) left by an interrupted run, e.g. {stale[0]}")
    return shards


def shard_output_folders() -> dict[str, tuple[str, ...]]:
    """Where the run directory keeps one file per input shard: folder (``*``: any sub-folder) → file suffixes.

    From every registered stage's ``writes`` (``embeddings/<stem>.parquet``, ``buckets/<bucket>/<stem>.parquet``
    ...), plus the per-unit stats, completion markers and failure records of the per-shard stages.
    """
    folders: dict[str, set[str]] = {}
    for name in STAGES:
        cls = STAGES[name].obj
        for pattern in cls.writes:
            folder, _, file = pattern.rpartition("/")
            if folder and file.startswith("<stem>"):
                folders.setdefault(re.sub(r"<[^>/]+>", "*", folder), set()).add(file[len("<stem>") :])
        if issubclass(cls, ShardStage):
            for folder, suffix in (("stats", ".json"), ("completions", ""), ("failures", ".json")):
                folders.setdefault(f"{folder}/{name}", set()).add(suffix)
    # longest suffix first: quality/x.llm-cache.jsonl is x's, not x.llm-cache's
    return {k: tuple(sorted(v, key=len, reverse=True)) for k, v in folders.items()}


def _clean_up_interrupted(cfg: WinnowConfig, run: RunDir) -> None:
    """After SIGINT/SIGTERM: the local executor's workers have ended (the pool was terminated and joined), so the
    temporary files they left can go; Ray and Slurm tasks may still run elsewhere and keep theirs."""
    if cfg.executor.kind == "local" and run.holds_lock:
        try:
            run.remove_stale_temps()
        except OSError as e:  # the interruption is what the caller must see; the next run removes them
            logger.warning(f"temporary files of the interrupted run not removed ({e}); the next run removes them")


def _run_stage(ctx: _RunContext, name: str) -> None:
    """One stage: hand its incomplete units to the executor, then collect stats and failures.

    winnow's per-unit markers are the only completion record: datatrove runs with ``skip_completed=False`` on
    exactly the units whose marker is missing or stale (its task ``rank`` indexes that list), so its own
    completion files are never read and never need deleting.
    """
    cfg, run = ctx.cfg, ctx.run
    stage = STAGES[name](cfg, run.url, ctx.shards, overwrite=ctx.overwrite, progress=ctx.progress and ctx.in_process)
    units = stage.units()
    if not units:  # e.g. score with score.backend=none
        return
    fp = stage.fingerprint
    if ctx.overwrite:
        run.clear_completions(name)
    stage.todo = _incomplete_units(run, stage, units, fp)
    ctx.result.ran[name] = len(stage.todo)
    if stage.todo:
        executor = build_executor(stage, cfg, run, len(stage.todo), depends_job_id=ctx.last_job)
        if cfg.executor.kind == "slurm":
            _submit(ctx, name, executor, stage.todo)
        else:
            _execute(ctx, name, executor, stage.todo)
    if ctx.result.jobs:  # this stage (or one before it) is queued on Slurm: nothing to collect yet
        return
    _collect(ctx, name, stage, units, fp)


def _incomplete_units(run: RunDir, stage: Stage, units: list[str], fp: str) -> list[str]:
    """The units to run: those without a current marker, and those whose marker is current but one of whose output
    files is missing or unreadable (their marker is removed, with a warning naming the file)."""
    complete = [u for u in units if run.is_complete(stage.name, u, stage.marker(u, fp))]
    checks = [(u, rel) for u in complete for rel in stage.outputs(u)]
    with ThreadPoolExecutor(max_workers=8) as pool:  # a footer read each: threads for remote run directories
        problems = list(pool.map(lambda c: run.check_file(c[1]), checks))
    broken: dict[str, str] = {}
    for (unit, rel), problem in zip(checks, problems, strict=True):
        if problem and unit not in broken:
            broken[unit] = f"{run.url_of(rel)} is {problem}"
    for unit, why in broken.items():
        logger.warning(f"{stage.name}: {unit} was complete, but {why}: redoing it")
        run.remove(f"completions/{stage.name}/{unit}")
    done = set(complete) - set(broken)
    return [u for u in units if u not in done]


def _submit(ctx: _RunContext, name: str, executor: Any, todo: list[str]) -> None:
    _warn_previous_failures(ctx.run, name, todo)
    executor.launch_job()  # one array over the incomplete units
    if executor.job_id_retriever.ids:
        ctx.result.jobs[name] = list(executor.job_id_retriever.ids)
        ctx.last_job = executor.job_id


def _execute(ctx: _RunContext, name: str, executor: Any, todo: list[str]) -> None:
    show = ctx.progress and not ctx.in_process and len(todo) > 1
    stop, monitor = _progress_monitor(ctx.run, name, todo, show)
    try:
        executor.run()
    finally:
        stop.set()
        if monitor:
            t, bar, wanted = monitor
            t.join()
            bar.n = len(wanted.intersection(ctx.run.listdir(f"completions/{name}")))
            bar.close()


def _collect(ctx: _RunContext, name: str, stage: Stage, units: list[str], fp: str) -> None:
    """Merge the stage's per-unit stats; raise if a unit failed or did not complete."""
    run, result = ctx.run, ctx.result
    incomplete = {u for u in units if not run.is_complete(name, u, stage.marker(u, fp))}
    # a failure record counts only while its unit is still incomplete (a later attempt may have succeeded)
    failures = {k: v for k, v in run.failures(name).items() if k in incomplete}
    result.stages[name] = run.read_stats(name, units)
    result.failures.update({f"{name}:{k}": v for k, v in failures.items()})
    write_stats_json(run, result)
    if failures:
        listing = "\n".join(f"  {k}: {v['error']}" for k, v in sorted(failures.items()))
        raise ShardError(run.url, f"stage {name}: {len(failures)} unit(s) failed:\n{listing}")
    # a task that died without recording a failure (killed worker, a Ray task error, setup() raising)
    missing = [u for u in units if u in incomplete]
    if missing:
        raise ShardError(
            run.url,
            f"stage {name}: {len(missing)} unit(s) did not complete (e.g. {missing[0]}); see the task logs "
            f"in {run.url_of('logs', name, 'logs')}",
        )


def _warn_previous_failures(run: RunDir, stage: str, units: list[str]) -> None:
    failures = {k: v for k, v in run.failures(stage).items() if k in set(units)}
    if failures:
        listing = "; ".join(f"{k}: {v['error']}" for k, v in sorted(failures.items())[:5])
        logger.warning(f"{stage}: {len(failures)} unit(s) failed in the previous jobs and are resubmitted: {listing}")


def _record_slurm_jobs(run: RunDir, jobs: dict[str, list[str]]) -> None:
    """``slurm_jobs.json`` (what the next ``winnow run`` checks with ``squeue``) and a note on the console."""
    info = {"submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "jobs": jobs}
    run.write_text(SLURM_JOBS, json.dumps(info, indent=2))
    if logs.log_level() != "ERROR":
        chain = " -> ".join(f"{stage} {','.join(ids)}" for stage, ids in jobs.items())
        print(
            f"submitted Slurm jobs (each after the one before): {chain}\n"
            f"job scripts: {run.url_of('logs', '<stage>', 'launch_script.slurm')}; ids in {run.url_of(SLURM_JOBS)}\n"
            "rerun the same `winnow run` once they are done to collect the stats (it submits only what is missing)",
            file=sys.stderr,
        )


def _other_stages_stats(ctx: _RunContext) -> dict[str, ShardStats]:
    """The stats of the registered stages this invocation did not run, summed from their per-unit files, for those
    complete under the current config and inputs (the others no longer describe the run's outputs)."""
    out = {}
    for name in STAGES:
        if name in ctx.result.stages:
            continue
        stage = STAGES[name](ctx.cfg, ctx.run.url, ctx.shards)
        units, fp = stage.units(), stage.fingerprint
        if units and all(ctx.run.is_complete(name, u, stage.marker(u, fp)) for u in units):
            out[name] = ctx.run.read_stats(name, units)
    return out


def write_stats_json(run: RunDir, result: RunResult, others: dict[str, ShardStats] | None = None) -> None:
    """``stats.json``: per stage ``input = kept + dropped + rejected``, from the per-shard stats files.

    Args:
        others: the stats of the stages this invocation did not run (they replace what ``stats.json`` said of
            them); ``None`` keeps the entries already there.
    """
    stages = {name: json.loads(s.to_json()) for name, s in result.stages.items()}
    if others is not None:
        stages.update({name: json.loads(s.to_json()) for name, s in others.items()})
        stages = {name: stages[name] for name in STAGES if name in stages}
    else:
        existing = {}
        if run.exists("stats.json"):
            try:
                existing = json.loads(run.read_text("stats.json")).get("stages", {})
            except json.JSONDecodeError:
                existing = {}
        stages = {**existing, **stages}
    data = {"winnow_version": winnow.__version__, "shards": len(result.shards), "stages": stages}
    run.write_text("stats.json", json.dumps(data, indent=2))
