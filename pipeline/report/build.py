"""Building a run's report: every table, every figure, ``report.md`` and ``report.html`` under ``<run>/report/``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from winnow.core.errors import CurationError
from winnow.core.rundir import RunDir
from winnow.pipeline.report.curves import DEFAULT_FRACTIONS, pruning_curves
from winnow.pipeline.report.figures import (
    fig_cluster_sizes,
    fig_domain_share,
    fig_law_fit,
    fig_law_prediction,
    fig_pruning_curves,
    fig_score_histograms,
    png,
)
from winnow.pipeline.report.funnel import fig_prefilter_funnel, funnel_blocks, prefilter_funnel
from winnow.pipeline.report.law import (
    LAW_POINT,
    bucket_law,
    bucket_tokens,
    fitted_bucket_law,
    law_fit_table,
    law_points,
    law_prediction_table,
    predicted_errors,
    quality_buckets,
    single_pool_law,
)
from winnow.pipeline.report.proxy import proxy_curves
from winnow.pipeline.report.render import report_blocks, to_html, to_markdown
from winnow.pipeline.report.scores import load_run
from winnow.pipeline.report.tables import cluster_size_table, domain_share_table, score_histogram_table

__all__ = ["REPORT_DIR", "Report", "build_report"]

REPORT_DIR = "report"


@dataclass
class Report:
    """What :func:`build_report` wrote.

    Args:
        curves: The ``pruning_curves.csv`` frame.
        files: Paths written, relative to the run directory.
        notes: The report's notes.
        fit: The proxy law fit (``FitResult.to_dict()``), or None.
    """

    curves: pl.DataFrame
    files: list[str]
    notes: list[str]
    fit: dict | None = None


def build_report(
    run_dir: str,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    strategies: Sequence[str] | None = None,
    proxy=None,
    budget_tokens: float | None = None,
    sets: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    domain: str = "auto",
    storage_options: dict[str, Any] | None = None,
) -> Report:
    """Compute every table of a run's report, draw its figures and write ``<run>/report/`` (module doc).

    Args:
        run_dir: The run directory.
        fractions: Keep fractions (default :data:`~winnow.pipeline.report.curves.DEFAULT_FRACTIONS`).
        strategies: Strategies (default every supported one of
            :data:`~winnow.pipeline.report.decisions.CURVE_STRATEGIES`).
        proxy: A :class:`winnow.pipeline.report.proxy_lm.ProxyConfig` to measure ``proxy_loss``, or None (default).
        budget_tokens: Budget of ``predicted_error`` (default ``mix.budget_tokens``, else the corpus's tokens).
        sets: ``key=value`` overrides of the run's resolved config.
        inputs: Where the run's input shards are now (replaces ``io.input``).
        domain: Domain column (``auto``: ``quality_domain``, else ``source``).
        storage_options: fsspec options of a remote run directory.

    Returns:
        A :class:`Report`.
    """
    scores = load_run(
        run_dir, sets=sets, inputs=inputs, storage_options=storage_options, domain=domain, texts=proxy is not None
    )
    rd = scores.run
    curves, points, notes = pruning_curves(scores, fractions, strategies, budget_tokens)
    if curves.height == 0:
        msg = "no strategy can be evaluated on this run: " + "; ".join(notes)
        raise CurationError(msg)
    notes = scores.notes + notes
    law = single_pool_law(scores.cfg)
    budget = int(curves["budget_tokens"][0])
    corpus_tokens = int(scores.frame["n_words"].cast(pl.Float64).fill_null(0).sum())
    fit_json = None
    fit_note = None
    tables: dict[str, pl.DataFrame] = {}
    proxy_info: dict[str, Any] = {}
    buckets = quality_buckets(scores.frame, scores.cfg, scores.quality)
    bucket_params = bucket_law(scores.cfg, buckets)
    if proxy is not None:  # the strategies' points and, per quality bucket, the law fit's (law.py module doc)
        law_pts, pool_words = law_points(
            scores.frame, buckets, proxy.tokens_trained, proxy.heldout_fraction, proxy.seed
        )
        per_point, ckpts, proxy_info = proxy_curves(scores, [*points, *law_pts], proxy)
        is_law = pl.col("strategy").str.starts_with(LAW_POINT)
        per_point, law_ckpts, ckpts = per_point.filter(~is_law), ckpts.filter(is_law), ckpts.filter(~is_law)
        curves = curves.join(per_point, on=["strategy", "keep_fraction"], how="left", maintain_order="left")
        tables["law_fit"], fit_json, fit_note = law_fit_table(
            law_ckpts, pool_words, buckets, {"proxy": proxy.to_dict()}
        )
        tables["proxy_checkpoints"] = ckpts
        if fit_json is not None:  # predicted_error from the law just measured
            bucket_params = fitted_bucket_law(fit_json, buckets, scores.cfg, f"{REPORT_DIR}/law_fit.json")
            curves = curves.with_columns(predicted_errors(curves, bucket_params, budget))
    tables = {"pruning_curves": curves, **tables}
    tables["score_histograms"] = score_histogram_table(scores, sorted(set(curves["keep_fraction"].to_list())))
    if scores.clusters:
        tables["cluster_sizes"] = cluster_size_table(scores)
    tables["domain_share"] = domain_share_table(scores, points)
    everything = bucket_tokens(
        [True] * scores.frame.height, buckets, scores.frame["n_words"].cast(pl.Float64).fill_null(0).to_numpy()
    )
    tables["law_prediction"] = law_prediction_table(
        curves, bucket_params, budget, corpus_tokens, scores.cfg.mix.max_repeats, composition=everything
    )

    funnel = prefilter_funnel(rd, scores.cfg, _stems(rd, scores))
    if funnel is not None:
        tables["prefilter_funnel"] = funnel
    figures, ref_fraction = _figures(tables, curves, budget)
    files, images = _write_tables_and_figures(rd, tables, figures, fit_json)
    if fit_note:
        notes.append(fit_note)

    blocks = report_blocks(
        scores, curves, law, budget, ref_fraction, figures, proxy, proxy_info, fit_json, notes, funnel_blocks(funnel)
    )
    title = f"winnow report: {scores.cfg.run.name or rd.url.rsplit('/', 1)[-1]}"
    rd.write_text(f"{REPORT_DIR}/report.md", to_markdown(blocks))
    rd.write_text(f"{REPORT_DIR}/report.html", to_html(blocks, images, title))
    files += [f"{REPORT_DIR}/report.md", f"{REPORT_DIR}/report.html"]
    return Report(curves, files, notes, fit_json)


def _figures(tables: dict[str, pl.DataFrame], curves: pl.DataFrame, budget: int) -> tuple[dict[str, Any], float]:
    """Every figure the tables support, and the keep fraction of the domain-share figure (the one nearest 0.5)."""
    fracs = sorted(set(curves["keep_fraction"].to_list()))
    ref_fraction = min(fracs, key=lambda x: (abs(x - 0.5), x))
    figures = {
        "pruning_curves": fig_pruning_curves(curves),
        "domain_share": fig_domain_share(tables["domain_share"], ref_fraction),
        "law_prediction": fig_law_prediction(tables["law_prediction"], budget),
    }
    if tables["score_histograms"].height:
        figures["score_histograms"] = fig_score_histograms(tables["score_histograms"])
    if "cluster_sizes" in tables:
        figures["cluster_sizes"] = fig_cluster_sizes(tables["cluster_sizes"])
    if "law_fit" in tables and tables["law_fit"].height:
        figures["law_fit"] = fig_law_fit(tables["law_fit"])
    if "prefilter_funnel" in tables:
        figures["prefilter_funnel"] = fig_prefilter_funnel(tables["prefilter_funnel"])
    return figures, ref_fraction


def _stems(rd: RunDir, scores: Any) -> list[str]:
    """The run's output names: the manifest's, else those of the frame."""
    manifest = rd.manifest()
    if manifest is not None:
        return [s.stem for s in manifest.to_shards()]
    return sorted(set(scores.frame["stem"].to_list()))


def _write_tables_and_figures(
    rd: RunDir, tables: dict[str, pl.DataFrame], figures: dict[str, Any], fit_json: dict | None
) -> tuple[list[str], dict[str, bytes]]:
    """Write every table (CSV), figure (PNG) and the law fit (JSON); the paths written and the PNGs' bytes."""
    files: list[str] = []
    for name, t in tables.items():
        rd.write_text(f"{REPORT_DIR}/{name}.csv", t.write_csv())
        files.append(f"{REPORT_DIR}/{name}.csv")
    images: dict[str, bytes] = {}
    for name, fig in figures.items():
        images[f"{name}.png"] = png(fig)
        rd.write_bytes(f"{REPORT_DIR}/{name}.png", images[f"{name}.png"])
        files.append(f"{REPORT_DIR}/{name}.png")
    if fit_json is not None:
        rd.write_text(f"{REPORT_DIR}/law_fit.json", json.dumps(fit_json, indent=2))
        files.append(f"{REPORT_DIR}/law_fit.json")
    return files, images
