"""The ``winnow`` command line: one subcommand per stage, plus ``run`` for all of them.

Every subcommand takes the same options: ``-c CONFIG``, ``--input`` (repeatable), ``--output``, ``--set key=value``
(repeatable), ``--workers``, ``--limit``, ``--seed``, ``--overwrite``, ``--fail-on-reject``, ``--dry-run``,
``--no-progress``, ``-v``/``-q``. Results go to files, logs to stderr. Exit codes: 0 success, 1 failed shards or
rejects with ``--fail-on-reject``, 2 usage or configuration error.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

import winnow
from winnow.core.cli_util import exit_on_error, exit_on_signal
from winnow.core.io import list_shards
from winnow.core.redact import redact_url
from winnow.core.rundir import RunDir
from winnow.pipeline.config import WinnowConfig, load_config

#: sub-commands imported only when they run (``winnow --help`` must not import the report, the laws' scipy fits or
#: the mixer): name -> (module, attribute: a typer command function or a Typer app, one-line help)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "mix": ("winnow.pipeline.cli.mix", "mix_command", "Plan the training mixture of a run for a token budget."),
    "report": (
        "winnow.pipeline.report.report", "report_command", "Pruning curves of a finished run, per strategy.",
    ),
    "train-student": (
        "winnow.pipeline.cli.student", "train_student_command",
        "Train the student rater on LLM ratings of a run's documents.",
    ),
    "stages": (
        "winnow.pipeline.cli.registry", "stages_command",
        "List the registered stages: order, what each reads and writes, GPU or not.",
    ),
    "strategies": (
        "winnow.pipeline.cli.registry", "strategies_command", "List the registered prune strategies and raters.",
    ),
    "laws": (
        "winnow.pipeline.cli.laws", "laws_app",
        "Scaling-law calculator: Goyal et al. utility, Muennighoff et al. repetition, fits.",
    ),
}  # fmt: skip


def _load_command(name: str) -> click.Command:
    module, attr, help_text = LAZY_COMMANDS[name]
    obj = getattr(importlib.import_module(module), attr)
    if isinstance(obj, typer.Typer):
        command = typer.main.get_command(obj)
        command.help = command.help or help_text
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(obj)
        command = typer.main.get_command(single)
    command.name = name
    return command


class LazyCommand(click.Command):
    """Stands in for a sub-command in listings and help; the real command is imported when it is invoked."""

    def __init__(self, name: str, help_text: str):
        super().__init__(name, help=help_text, short_help=help_text)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any):
        return _load_command(self.name).make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *LAZY_COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            return LazyCommand(cmd_name, LAZY_COMMANDS[cmd_name][2])
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="winnow",
    cls=LazyGroup,
    help="Curate LLM pretraining corpora: embed, cluster, score, prune and mix documents from jsonl/parquet shards.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"winnow {winnow.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print winnow's version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Curate LLM pretraining corpora: embed, cluster, score, prune and mix documents from jsonl/parquet shards."""
err = Console(stderr=True, soft_wrap=True)
out = Console()

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
InputOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input", "-i", help="Input shards: path, glob, directory or fsspec URL; repeatable. Replaces io.input."
    ),
]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="Run directory. Replaces io.output.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key: --set embed.batch_size=128; repeatable."),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", "-j", help="Shards processed in parallel (executor.workers).")
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", help="Read at most N records per shard (io.limit), for debugging.")
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (run.seed).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Redo shards that are already complete.")]
FailOpt = Annotated[bool, typer.Option("--fail-on-reject", help="Exit 1 if any input record was rejected.")]
DryOpt = Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and the shards, then exit.")]
NoProgressOpt = Annotated[
    bool, typer.Option("--no-progress", help="No progress bars (they are off when stderr is not a TTY).")
]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs (-v INFO, -vv DEBUG).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on the console.")]


def _config(config, inputs, output, sets, workers, limit, seed) -> WinnowConfig:
    return load_config(
        config,
        sets,
        {
            "io.input": list(inputs) if inputs else None,
            "io.output": output,
            "executor.workers": workers,
            "io.limit": limit,
            "run.seed": seed,
        },
    )


def _summary(result, storage_options: dict | None = None) -> None:
    """End-of-run summary on stderr: the stats of the stages that ran and (``executor.kind: slurm``) the jobs
    submitted, whose stages have not run yet."""
    if result.stages or not result.jobs:
        _stats_table(result)
    if result.jobs:  # stages submitted to Slurm have not run yet: nothing to count
        _jobs_table(result)
        n_jobs = sum(len(ids) for ids in result.jobs.values())
        tail = f"{n_jobs} Slurm job(s) submitted; outputs in {result.run_dir} once they finish"
    else:
        tail = f"{result.seconds:,.1f}s wall; outputs in {result.run_dir}"
        _prune_line(result, storage_options)
    err.print(f"{len(result.shards)} shard(s), {tail}")


def _prune_line(result, storage_options: dict | None = None) -> None:
    """Which decision ran: the strategy, its target and (quality strategies) the selection."""
    if "prune" not in result.stages:
        return
    try:
        summary = json.loads(RunDir(result.run_dir, storage_options).read_text("prune.json"))
    except (OSError, ValueError):
        return
    target = "" if summary.get("target") is None else f", target {summary['target']:,} documents"
    selection = f", {summary['selection']} selection" if summary.get("selection") else ""
    err.print(f"prune: {summary.get('strategy')}{target}{selection}")


def _stats_table(result) -> None:
    table = Table(title=f"winnow run: {result.run_dir}", title_justify="left")
    for col in ("stage", "input", "kept", "dropped", "rejected", "seconds", "docs/s"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    reused = []
    for name, s in result.stages.items():
        rate = f"{s.kept / s.seconds:,.1f}" if s.seconds else "-"
        label = name
        if result.ran.get(name, 1) == 0:  # every unit came from an earlier run: its timings are that run's
            label, rate = f"{name} (reused)", f"({rate})"
            reused.append(name)
        table.add_row(
            label, f"{s.input:,}", f"{s.kept:,}", f"{s.dropped:,}", f"{s.rejected:,}", f"{s.seconds:,.1f}", rate
        )
    err.print(table)
    if reused:
        err.print(f"reused from an earlier run (its counts and timings): {', '.join(reused)}")
    reasons: dict[str, int] = {}
    for s in result.stages.values():
        for k, v in s.rejected_by_reason.items():
            reasons[k] = max(reasons.get(k, 0), v)
    if reasons:
        err.print("rejected by reason: " + ", ".join(f"{k}={v:,}" for k, v in sorted(reasons.items())))
        err.print(f"rejects: {result.run_dir}/rejects/")


def _jobs_table(result) -> None:
    table = Table(title=f"winnow run: {result.run_dir}: submitted to Slurm", title_justify="left")
    table.add_column("stage")
    table.add_column("job ids")
    for name, ids in result.jobs.items():
        table.add_row(name, ", ".join(ids))
    err.print(table)


def _execute(
    stages: list[str] | None,
    config, inputs, output, sets, workers, limit, seed,
    overwrite, fail_on_reject, dry_run, no_progress, verbose, quiet,
) -> None:  # fmt: skip
    # lazy for start-up time, not a cycle: the runner imports datatrove and every stage (torch, faiss), which
    # `winnow --help` and `winnow config` do not need (tests/test_architecture.py allows exactly this one)
    from winnow.pipeline.runner import STAGES, run_pipeline, setup_logging

    stages = list(STAGES) if stages is None else stages  # None: every registered stage, in order
    setup_logging(-1 if quiet else verbose)
    # SIGINT/SIGTERM: the run stops its workers, removes its temporary files, releases the lock; exit 130/143
    with exit_on_signal(err), exit_on_error(err, config_label="config error"):
        cfg = _config(config, inputs, output, sets, workers, limit, seed)
        if dry_run:
            shards = list_shards(cfg.io.input, cfg.io.storage_options)
            typer.echo(cfg.to_yaml(extra={"winnow_version": winnow.__version__, "config_hash": cfg.fingerprint()}))
            typer.echo(f"# stages: {', '.join(stages)}")
            typer.echo(f"# {len(shards)} shard(s):")
            for s in shards:
                codec = f", {s.compression}" if s.compression else ""
                typer.echo(f"#   {redact_url(s.url)} -> {s.stem} ({s.format}{codec})")
            return
        result = run_pipeline(
            cfg, stages, overwrite=overwrite, progress=False if no_progress else None, fail_on_reject=fail_on_reject
        )
    if not quiet:
        _summary(result, cfg.io.storage_options)


def _stage_command(stages: list[str] | None, help_text: str):
    def command(
        config: ConfigOpt = None,
        input: InputOpt = None,
        output: OutputOpt = None,
        set: SetOpt = None,
        workers: WorkersOpt = None,
        limit: LimitOpt = None,
        seed: SeedOpt = None,
        overwrite: OverwriteOpt = False,
        fail_on_reject: FailOpt = False,
        dry_run: DryOpt = False,
        no_progress: NoProgressOpt = False,
        verbose: VerboseOpt = 0,
        quiet: QuietOpt = False,
    ) -> None:
        _execute(
            stages, config, input, output, set, workers, limit, seed, overwrite, fail_on_reject, dry_run,
            no_progress, verbose, quiet,
        )  # fmt: skip

    command.__doc__ = help_text
    return command


app.command("run")(
    _stage_command(
        None,
        "Run every registered stage (`winnow stages` lists them): read, pre-filters (with a prefilter section), "
        "embed, cluster (fit + assign), dedup, score, prune, write curated shards; print a summary.\n\n"
        "Stages whose config did not change are skipped, so changing only prune.* redoes only prune and write.\n\n"
        "Example: winnow run -c configs/quickstart.yaml --set prune.strategy=dbp --set prune.keep_fraction=0.5",
    )
)
app.command("prefilter")(
    _stage_command(
        ["read", "prefilter", "textdedup"],
        "Parse and validate every shard once, then run the pre-filters of the config's prefilter section: language "
        "ID and datatrove's rule filters per shard (filters/<shard>.parquet), exact and MinHash dedup across shards "
        "(textdedup/<shard>.parquet). Filtered documents are not embedded. Nothing to do without a prefilter section."
        "\n\nExample: winnow prefilter -c configs/web.yaml",
    )
)
app.command("embed")(
    _stage_command(
        ["read", "prefilter", "textdedup", "embed"],
        "Parse and validate every shard once (docs/, rejects/), run the pre-filters (if configured), then embed every "
        "surviving document into <output>/embeddings/<shard>.parquet (id, embedding), L2-normalised. Bad rows go to "
        "<output>/rejects/.",
    )
)
app.command("cluster")(
    _stage_command(
        ["fit", "assign"],
        "Fit spherical k-means on a sample of the embeddings (centroids.npy, kmeans.json), then assign every "
        "document (assignments/<shard>.parquet: cluster_id, dist_to_centroid; buckets/ for dedup). Needs embed.",
    )
)
app.command("dedup")(
    _stage_command(
        ["dedup"],
        "SemDeDup within clusters: for each document the max cosine to a higher-ranked member of its cluster "
        "(dedup/<bucket>.parquet: dup_max_sim, nearest id). Any eps is then a threshold. Needs cluster.",
    )
)
app.command("score")(
    _stage_command(
        ["score"],
        "Rate every document on the 13 DataMan criteria, an overall score and a domain (score.backend: heuristic "
        "by default, llm, or student) into <output>/quality/<shard>.parquet. The heuristic domain and the student "
        "use the stored embeddings.",
    )
)
app.command("prune")(
    _stage_command(
        ["prune", "decide", "write"],
        "Decide keep/drop for prune.strategy and its target from the stored scores (decisions/, "
        "cluster_stats.parquet, prune.json), then write the curated shards. Never recomputes embeddings, clusters "
        "or similarities.",
    )
)
app.command("write")(
    _stage_command(
        ["write"],
        "Write <output>/curated/<shard>.parquet: every valid input row with its columns unchanged plus the score "
        "columns, keep and drop_reason (every row kept if prune has not run for the current config).",
    )
)


@app.command("config")
def show_config(
    config: ConfigOpt = None,
    set: SetOpt = None,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON schema of the config instead.")] = False,
) -> None:
    """Print the resolved config (defaults, then the file, then --set overrides) as YAML."""
    with exit_on_error(err, config_label="config error"):
        cfg = load_config(config, set)
    if schema:
        typer.echo(json.dumps(WinnowConfig.model_json_schema(), indent=2))
    else:
        typer.echo(cfg.to_yaml(), nl=False)


@app.command("version")
def show_version() -> None:
    """Print winnow's version."""
    out.print(winnow.__version__)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; ``main([...])`` runs the CLI in-process (exits via SystemExit)."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="winnow")


if __name__ == "__main__":
    main()
