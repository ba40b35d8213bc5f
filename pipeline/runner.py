"""Running stages: prepare the run directory, execute each stage on a datatrove executor, merge stats.

``run_pipeline`` is what ``winnow run`` and every stage subcommand call. Per-shard stages run as datatrove
pipelines with one task per shard (``LocalPipelineExecutor``; ``executor.kind`` picks it). Resumption has two
layers: datatrove's rank completions (valid while the shard list is unchanged; cleared when it changes) and
winnow's per-shard markers ``completions/<stage>/<stem>``, named after the shard, which decide in the end.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from loguru import logger
from tqdm.auto import tqdm

import pipeline
from pipeline.config import WinnowConfig
from pipeline.errors import ConfigError, RejectsFoundError, ShardError
from pipeline.io import Shard, list_shards
from pipeline.rundir import RunDir
from pipeline.stages import STAGES, Stage
from pipeline.stats import ShardStats

_LOG_LEVEL = {"level": "WARNING"}


def setup_logging(verbosity: int = 0) -> None:
    """Console logging: warnings by default, INFO with ``-v``, DEBUG with ``-vv``, errors only with ``-q``."""
    level = {-1: "ERROR", 0: "WARNING", 1: "INFO"}.get(verbosity, "DEBUG" if verbosity > 1 else "ERROR")
    _LOG_LEVEL["level"] = level
    _apply_logging()


def _apply_logging() -> None:
    logger.remove()
    logger.add(sys.stderr, level=_LOG_LEVEL["level"], format="<level>{level: <8}</level> | {message}")


class WinnowLocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor, with task logs kept in files and the console left to winnow's log level."""

    def __init__(self, *args: Any, log_level: str = "WARNING", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.log_level = log_level

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):  # type: ignore[override]
        _LOG_LEVEL["level"] = self.log_level
        # local_rank > 0 makes datatrove log only errors to the console; its per-task log file keeps everything
        console_rank = local_rank if self.log_level in ("INFO", "DEBUG") else max(1, local_rank)
        try:
            return super()._run_for_rank(rank, console_rank, node_rank)
        finally:
            _apply_logging()  # datatrove resets loguru to DEBUG on stderr after each task


def build_executor(stage: Stage, cfg: WinnowConfig, run: RunDir, n_tasks: int, overwrite: bool):
    kind = cfg.executor.kind
    if kind == "local":
        return WinnowLocalExecutor(
            pipeline=[stage],
            tasks=n_tasks,
            workers=min(cfg.executor.workers, n_tasks),
            logging_dir=run.url_of("logs", stage.name),
            skip_completed=not overwrite,
            start_method=cfg.executor.start_method,
            log_level=_LOG_LEVEL["level"],
        )
    raise ConfigError(f"executor.kind={kind!r} is not supported; allowed: local")  # pragma: no cover


@dataclass
class RunResult:
    """What a run did: merged stats per stage, shards, failures, wall time."""

    run_dir: str
    shards: list[Shard]
    stages: dict[str, ShardStats] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

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


def _reset_rank_completions(run: RunDir, stage: str, units: list[str], fingerprint: str) -> None:
    """datatrove's completions are per rank; ranks map to units only for the same unit list and config."""
    listing = json.dumps({"fingerprint": fingerprint, "units": units}, indent=0)
    rel = f"logs/{stage}/shards.json"
    if run.exists(rel) and run.read_text(rel) != listing:
        run.remove(f"logs/{stage}/completions", recursive=True)
    run.write_text(rel, listing)


def prepare_run_dir(cfg: WinnowConfig, run: RunDir) -> None:
    """Write ``config.resolved.yaml`` (the config of the latest invocation; each stage's completion markers hold
    the fingerprint of the config values it depends on, so a changed value redoes exactly the stages it affects)."""
    header = {"winnow_version": pipeline.__version__, "config_hash": cfg.fingerprint()}
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

    Raises:
        ConfigError: bad inputs or a run directory made by another config.
        ShardError: some shards failed (after every other shard of the stage finished); they are listed.
        RejectsFoundError: ``fail_on_reject`` and some input was rejected.
    """
    if not cfg.io.output:
        raise ConfigError("no output given: pass --output DIR or set io.output in the config")
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; allowed: {', '.join(STAGES)}")
    if progress is None:
        progress = sys.stderr.isatty()
    t0 = time.perf_counter()
    shards = list_shards(cfg.io.input, cfg.io.storage_options)
    run = RunDir(cfg.io.output, cfg.io.storage_options)
    prepare_run_dir(cfg, run)
    result = RunResult(run_dir=run.url, shards=shards)
    in_process = cfg.executor.workers == 1
    for name in stages:
        stage = STAGES[name](cfg, run.url, shards, overwrite=overwrite, progress=progress and in_process)
        units = stage.units()
        if not units:  # e.g. score with score.backend=none
            continue
        if overwrite:
            run.clear_completions(name)
        _reset_rank_completions(run, name, units, stage.fingerprint)
        # datatrove skips a rank whose completion exists; winnow's own marker is the truth (an interrupted
        # --overwrite, a marker deleted by hand, a failed unit): drop datatrove's where winnow's is not valid
        for i, unit in enumerate(units):
            if not run.is_complete(name, unit, stage.marker(unit)):
                run.remove(f"logs/{name}/completions/{i:05d}")
        executor = build_executor(stage, cfg, run, len(units), overwrite)
        stop, monitor = _progress_monitor(run, name, units, progress and not in_process and len(units) > 1)
        try:
            executor.run()
        finally:
            stop.set()
            if monitor:
                t, bar, wanted = monitor
                t.join()
                bar.n = len(wanted.intersection(run.listdir(f"completions/{name}")))
                bar.close()
        failures = {k: v for k, v in run.failures(name).items() if k in set(units)}
        for unit in failures:  # let datatrove rerun the rank of a failed unit next time
            run.remove(f"logs/{name}/completions/{units.index(unit):05d}")
        result.stages[name] = run.read_stats(name, units)
        result.failures.update({f"{name}:{k}": v for k, v in failures.items()})
        write_stats_json(run, result)
        if failures:
            listing = "\n".join(f"  {k}: {v['error']}" for k, v in sorted(failures.items()))
            raise ShardError(run.url, f"stage {name}: {len(failures)} unit(s) failed:\n{listing}")
    result.seconds = time.perf_counter() - t0
    write_stats_json(run, result)
    if fail_on_reject and result.rejected:
        raise RejectsFoundError(
            f"{result.rejected} input record(s) rejected (--fail-on-reject); see {run.url_of('rejects')}"
        )
    return result


def write_stats_json(run: RunDir, result: RunResult) -> None:
    """``stats.json``: per stage ``input = kept + dropped + rejected``, from the per-shard stats files."""
    data = {
        "winnow_version": pipeline.__version__,
        "shards": len(result.shards),
        "stages": {name: json.loads(s.to_json()) for name, s in result.stages.items()},
    }
    existing = {}
    if run.exists("stats.json"):
        try:
            existing = json.loads(run.read_text("stats.json")).get("stages", {})
        except json.JSONDecodeError:
            existing = {}
    data["stages"] = {**existing, **data["stages"]}
    run.write_text("stats.json", json.dumps(data, indent=2))
