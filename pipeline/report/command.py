"""``winnow report``: the typer command and its options (mounted by :mod:`winnow.pipeline.cli.app`).

Importing it must stay cheap (it is imported for ``winnow --help``): torch is imported by the proxy LM only when it
trains, matplotlib only when a figure is drawn.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from winnow.core.cli_util import exit_on_error
from winnow.core.errors import ConfigError
from winnow.core.logging import setup_logging
from winnow.core.rundir import RunDir
from winnow.pipeline.report.build import REPORT_DIR, build_report
from winnow.pipeline.report.curves import DEFAULT_FRACTIONS
from winnow.pipeline.report.proxy_lm import ProxyConfig
from winnow.pipeline.report.scores import run_config

__all__ = ["report_command"]


def _parse_list(text: str | None, what: str, cast=str) -> list | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        return [cast(x) for x in items]
    except ValueError:
        msg = f"{what}: expected a comma-separated list, got {text!r}"
        raise typer.BadParameter(msg) from None


def report_command(
    run: Annotated[str, typer.Option("--run", "-r", help="The run directory (written by `winnow run`).")],
    proxy: Annotated[
        str, typer.Option("--proxy", help="none, or lm: train a small LM per point and measure its loss (proxy_loss).")
    ] = "none",
    fractions: Annotated[
        str | None,
        typer.Option(
            "--fractions", help="Keep fractions, e.g. 0.1,0.2,0.5 (default 0.1,0.2,0.3,0.5,0.7,0.9,1)."
        ),  # fmt: skip
    ] = None,
    strategies: Annotated[
        str | None, typer.Option("--strategies", help="Strategies (default: every one the run's scores support).")
    ] = None,
    budget_tokens: Annotated[
        float | None,
        typer.Option(
            "--budget-tokens", help="Budget of predicted_error (default mix.budget_tokens, else the corpus)."
        ),
    ] = None,
    proxy_preset: Annotated[
        str,
        typer.Option(
            "--proxy-preset", help="Proxy LM preset: tiny (CPU, minutes) or small (~23M parameters, one GPU)."
        ),
    ] = "tiny",
    eval_: Annotated[
        list[str] | None,
        typer.Option(
            "--eval",
            help="Evaluation shards for the proxy LM (jsonl/parquet with the run's text field), besides the held-out "
            "slice; repeatable; the first is the primary set (proxy_loss, law fit).",
        ),
    ] = None,
    proxy_tokenizer: Annotated[
        str,
        typer.Option(
            "--proxy-tokenizer",
            help="bpe (trained on the run's text, once per report), bytes, or a tokenizer.json path.",
        ),
    ] = "bpe",  # fmt: skip
    proxy_vocab: Annotated[
        int | None, typer.Option("--proxy-vocab", help="Vocabulary of the trained BPE (default: the preset's).")
    ] = None,
    proxy_tokens: Annotated[
        int | None, typer.Option("--proxy-tokens", help="Proxy LM training tokens per point (default: the preset's).")
    ] = None,
    proxy_layers: Annotated[int | None, typer.Option("--proxy-layers", help="Proxy LM layers.")] = None,
    proxy_d_model: Annotated[int | None, typer.Option("--proxy-d-model", help="Proxy LM width.")] = None,
    proxy_heads: Annotated[int | None, typer.Option("--proxy-heads", help="Proxy LM attention heads.")] = None,
    proxy_context: Annotated[int | None, typer.Option("--proxy-context", help="Proxy LM context (tokens).")] = None,
    proxy_batch: Annotated[int | None, typer.Option("--proxy-batch", help="Proxy LM windows per step.")] = None,
    proxy_lr: Annotated[float | None, typer.Option("--proxy-lr", help="Proxy LM peak learning rate.")] = None,
    proxy_eval_tokens: Annotated[
        int | None, typer.Option("--proxy-eval-tokens", help="Tokens evaluated per evaluation set (at most).")
    ] = None,
    proxy_device: Annotated[str, typer.Option("--proxy-device", help="auto, cpu or cuda.")] = "auto",
    proxy_threads: Annotated[int, typer.Option("--proxy-threads", help="torch CPU threads for the proxy LM.")] = 1,
    proxy_repeats: Annotated[
        int,
        typer.Option(
            "--proxy-repeats", help="Proxy LM runs per point (seeds seed, seed+1, ...): mean ± standard error."
        ),
    ] = 3,
    seed: Annotated[int | None, typer.Option("--seed", help="Proxy LM seed (default run.seed).")] = None,
    domain: Annotated[
        str, typer.Option("--domain", help="Domain column: auto (quality_domain, else source) or a curated column.")
    ] = "auto",
    input: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="Where the run's input shards are now (io.input).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Override a key of the run's config: --set dedup.eps=0.1; repeatable."),
    ] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs (-v INFO).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on the console.")] = False,
) -> None:
    """Write <run>/report/: pruning curves of every strategy from the stored scores (CSV + PNG), score histograms,
    cluster sizes, kept share per domain, the scaling law, and report.md / report.html.

    With --proxy lm a small LM is trained on each point's kept documents for a fixed token budget (a BPE trained once
    on the corpus, --proxy-preset tiny on CPU or small on a GPU) and its loss on the held-out slice and on every
    --eval set is reported (nats/token, bits/byte, mean ± standard error over --proxy-repeats seeds) beside the
    law's prediction.

    Example: winnow report --run runs/quickstart --fractions 0.1,0.3,0.5,1 --proxy lm --eval data/clean.jsonl
    """
    err = Console(stderr=True, soft_wrap=True)
    setup_logging(-1 if quiet else verbose)
    if proxy not in ("none", "lm"):
        raise typer.BadParameter(f"--proxy must be none or lm, got {proxy!r}")
    fracs = _parse_list(fractions, "--fractions", float)
    names = _parse_list(strategies, "--strategies")
    with exit_on_error(err):
        proxy_cfg = None
        if proxy == "lm":
            run_seed = seed
            if run_seed is None:
                run_seed = run_config(RunDir(run), set_, None).run.seed
            try:
                proxy_cfg = ProxyConfig.from_preset(
                    proxy_preset, tokens=proxy_tokens, layers=proxy_layers, d_model=proxy_d_model, heads=proxy_heads,
                    context=proxy_context, batch_size=proxy_batch, lr=proxy_lr, eval_tokens=proxy_eval_tokens,
                    vocab_size=proxy_vocab, tokenizer=proxy_tokenizer, evals=tuple(eval_ or ()), device=proxy_device,
                    threads=proxy_threads, seed=run_seed, repeats=proxy_repeats,
                )  # fmt: skip
            except ValueError as e:
                raise ConfigError(str(e)) from None
        result = build_report(
            run, fractions=fracs or DEFAULT_FRACTIONS, strategies=names, proxy=proxy_cfg,
            budget_tokens=budget_tokens, sets=set_, inputs=input, domain=domain,
        )  # fmt: skip
    if not quiet:
        c = result.curves
        err.print(
            f"{c['strategy'].n_unique()} strategies × {c['keep_fraction'].n_unique()} keep fractions; "
            f"{len(result.files)} files",
            highlight=False,
        )
    typer.echo(f"{run.rstrip('/')}/{REPORT_DIR}/report.md")
