"""The pre-filter funnel: documents and tokens each pre-filter removed, in the order they apply.

Read from ``curated/`` one shard at a time (``drop_reason`` and the text's whitespace word count: the report's token
unit everywhere), so memory does not grow with the corpus. Rows dropped later by the prune strategy count as
survivors here.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from winnow.core.rundir import RunDir
from winnow.pipeline.config import WinnowConfig
from winnow.scorers.prefilter import PREFILTER_REASONS

__all__ = ["fig_prefilter_funnel", "funnel_blocks", "prefilter_funnel"]


def prefilter_funnel(rd: RunDir, cfg: WinnowConfig, stems: list[str]) -> pl.DataFrame | None:
    """One row per pre-filter step (``valid input``, each reason in order, ``survivors``): docs and tokens removed
    by the step and left after it. ``None`` without a ``prefilter`` section or ``curated/``."""
    if cfg.prefilter is None or not stems or not all(rd.exists(f"curated/{s}.parquet") for s in stems):
        return None
    text = cfg.io.text_field
    parts = []
    for stem in stems:
        with rd.fs.open(rd._p("curated", f"{stem}.parquet"), "rb") as f:
            frame = pl.read_parquet(f, columns=["drop_reason", text])
        parts.append(
            frame.select(
                pl.when(pl.col("drop_reason").is_in(list(PREFILTER_REASONS)))
                .then(pl.col("drop_reason"))
                .otherwise(pl.lit("survivors"))
                .alias("step"),
                pl.col(text).fill_null("").str.count_matches(r"\S+").cast(pl.Int64).alias("tokens"),
            )
            .group_by("step")
            .agg(pl.len().cast(pl.Int64).alias("docs"), pl.col("tokens").sum())
        )
    per = pl.concat(parts).group_by("step").agg(pl.col("docs").sum(), pl.col("tokens").sum())
    counts = {r["step"]: (r["docs"], r["tokens"]) for r in per.iter_rows(named=True)}
    total_docs = sum(d for d, _ in counts.values())
    total_tokens = sum(t for _, t in counts.values())
    rows: list[dict[str, Any]] = [_row("valid input", 0, 0, total_docs, total_tokens, total_docs, total_tokens)]
    left_docs, left_tokens = total_docs, total_tokens
    for reason in PREFILTER_REASONS:
        docs, tokens = counts.get(reason, (0, 0))
        left_docs, left_tokens = left_docs - docs, left_tokens - tokens
        rows.append(_row(reason, docs, tokens, left_docs, left_tokens, total_docs, total_tokens))
    return pl.DataFrame(rows)


def _row(step: str, docs: int, tokens: int, left_docs: int, left_tokens: int, total_d: int, total_t: int) -> dict:
    return {
        "step": step,
        "docs_removed": docs,
        "tokens_removed": tokens,
        "docs_left": left_docs,
        "tokens_left": left_tokens,
        "share_docs_removed": docs / total_d if total_d else 0.0,
        "share_tokens_removed": tokens / total_t if total_t else 0.0,
    }


def fig_prefilter_funnel(table: pl.DataFrame) -> Any:
    """Documents and tokens left after each pre-filter step (bars, share of the valid input)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    steps = table["step"].to_list()
    y = list(range(len(steps)))
    docs0 = max(int(table["docs_left"][0]), 1)
    tokens0 = max(int(table["tokens_left"][0]), 1)
    ax.barh([v + 0.2 for v in y], [d / docs0 for d in table["docs_left"]], height=0.4, label="documents left")
    ax.barh([v - 0.2 for v in y], [t / tokens0 for t in table["tokens_left"]], height=0.4, label="tokens left")
    ax.set_yticks(y, steps)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of the valid input left after the step")
    ax.set_title("pre-filter funnel")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def funnel_blocks(table: pl.DataFrame | None) -> list[tuple]:
    """The report's pre-filter section (a table and the figure)."""
    if table is None:
        return []
    rows = [
        [r["step"], f"{r['docs_removed']:,}", f"{r['tokens_removed']:,}", f"{r['docs_left']:,}",
         f"{r['tokens_left']:,}", f"{100 * r['share_tokens_removed']:.1f}%"]
        for r in table.iter_rows(named=True)
    ]  # fmt: skip
    return [
        ("h", 2, "Pre-filters"),
        ("p", "Documents and tokens (whitespace words) each pre-filter removed, in the order they apply; removed "
              "documents were not embedded, clustered or scored. `prefilter_funnel.csv` has the numbers."),
        ("table", ["step", "docs removed", "tokens removed", "docs left", "tokens left", "tokens removed (%)"], rows),
        ("img", "prefilter_funnel.png", "pre-filter funnel"),
    ]  # fmt: skip
