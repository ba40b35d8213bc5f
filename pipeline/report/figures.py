"""The report's figures: one function per figure, each drawn from the table of the same name.

Every function returns a ``matplotlib.figure.Figure`` on an Agg canvas (no pyplot state, no ``rcParams`` changes).
matplotlib is imported inside the functions: it is slow to import and only needed when a figure is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from winnow.pipeline.report.decisions import CURVE_STRATEGIES

__all__ = [
    "METRICS",
    "fig_cluster_sizes",
    "fig_domain_share",
    "fig_law_fit",
    "fig_law_prediction",
    "fig_pruning_curves",
    "fig_score_histograms",
    "png",
]

#: Metric columns of ``pruning_curves.csv`` drawn in ``pruning_curves.png``: column -> (panel title, y label).
METRICS: dict[str, tuple[str, str]] = {
    "tokens_kept": ("tokens kept", "whitespace words (× repeat)"),
    "mean_quality_score": ("mean quality score", "quality_score (1–5)"),
    "cluster_coverage": ("cluster coverage", "share of clusters kept"),
    "domain_entropy": ("domain entropy", "bits"),
    "dup_rate": ("duplicate rate", "share of kept docs"),
    "predicted_error": ("predicted error (Goyal law)", "error at the budget"),
    "proxy_loss": ("proxy LM eval loss (± sd over seeds)", "nats per token"),
}
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h")


def _style(strategy: str) -> dict[str, Any]:
    """The same colour and marker for a strategy in every figure."""
    names = list(CURVE_STRATEGIES)
    i = names.index(strategy) if strategy in names else len(names) + sum(map(ord, strategy)) % 2
    return {"color": _COLORS[i % len(_COLORS)], "marker": _MARKERS[i % len(_MARKERS)]}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: matplotlib is slow to import
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _compact(v: float) -> str:
    """1500 -> 1.5k, 2e6 -> 2M: tick labels of token counts."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def _log_ticks(axis, subs: Sequence[float] = (1.0, 2.0, 5.0), compact: bool = False) -> None:
    """Log scale with plain tick labels at ``subs`` × powers of ten (no ``2×10^4`` labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # lazy (module doc)

    if axis.axis_name == "y":
        axis.axes.set_yscale("log")
    else:
        axis.axes.set_xscale("log")
    axis.set_major_locator(LogLocator(base=10, subs=tuple(subs)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v) if compact else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def png(fig) -> bytes:
    """The figure as PNG bytes (110 dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def fig_pruning_curves(curves: pl.DataFrame):
    """Every metric of ``pruning_curves.csv`` against the keep fraction, one line per strategy."""
    metrics = [m for m in METRICS if m in curves.columns and curves[m].cast(pl.Float64).is_finite().any()]
    ncols = 4 if len(metrics) > 6 else 3
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig = _figure(4.0 * ncols, 3.2 * nrows + 0.8)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    strategies = list(dict.fromkeys(curves["strategy"].to_list()))
    for ax, m in zip(axes, metrics, strict=False):
        title, ylabel = METRICS[m]
        for s in strategies:
            g = curves.filter(pl.col("strategy") == s).sort("keep_fraction")
            x, y = g["keep_fraction"].to_numpy(), g[m].cast(pl.Float64).to_numpy()
            ax.plot(x, y, label=s, lw=1.5, ms=4, **_style(s))
            if m == "proxy_loss" and "proxy_loss_sd" in g.columns and g["proxy_loss_sd"].is_not_null().any():
                sd = g["proxy_loss_sd"].cast(pl.Float64).fill_null(0.0).to_numpy()
                ax.fill_between(x, y - sd, y + sd, color=_style(s)["color"], alpha=0.15, lw=0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("keep fraction")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if m == "tokens_kept":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 7), frameon=False)
    fig.suptitle("Pruning curves: every strategy decided from the stored scores")
    return fig


def fig_score_histograms(table: pl.DataFrame):
    """Histograms of the scores, with the cut that keeps each fraction and the SemDeDup duplicate threshold."""
    from matplotlib import colormaps  # lazy (module doc)
    from matplotlib.lines import Line2D

    names = list(dict.fromkeys(table["score"].to_list()))
    labels = {"quality_score": "quality_score (higher = better)", "dist_to_centroid": "dist_to_centroid (1 − cos)",
              "dup_max_sim": "dup_max_sim (cosine to a higher-ranked member)"}  # fmt: skip
    fig = _figure(4.6 * max(1, len(names)), 4.4)
    axes = fig.subplots(1, max(1, len(names)), squeeze=False).ravel()
    fractions = sorted({x for x in table["keep_fraction"].drop_nulls().to_list()})
    cmap = colormaps["viridis"]
    color = {fr: cmap(i / max(1, len(fractions) - 1)) for i, fr in enumerate(fractions)}
    for ax, name in zip(axes, names, strict=False):
        t = table.filter(pl.col("score") == name)
        bins = t.filter(pl.col("kind") == "bin")
        ax.bar(bins["x0"].to_numpy(), bins["count"].to_numpy(), width=(bins["x1"] - bins["x0"]).to_numpy(),
               align="edge", color="#c7c7c7", edgecolor="#7f7f7f", lw=0.4)  # fmt: skip
        cuts = t.filter(pl.col("kind") == "cut")
        for r in cuts.iter_rows(named=True):
            ax.axvline(r["x0"], color=color[r["keep_fraction"]], ls="--", lw=1.3)
        for r in t.filter(pl.col("kind") == "threshold").iter_rows(named=True):
            ax.axvline(r["x0"], color="#d62728", lw=2.0, label=r["label"])
            ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
        how = cuts["label"][0] if cuts.height else ""
        ax.set_title(f"{name}\ncuts: {how}" if how else name, fontsize=9)
        ax.set_xlabel(labels.get(name, name))
        ax.set_ylabel("documents")
        ax.grid(alpha=0.3, axis="y")
    handles = [Line2D([], [], color=color[fr], ls="--", lw=1.3, label=f"keep {fr:g}") for fr in fractions]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, title=None)
    fig.suptitle("Score distributions and the global cut that keeps each fraction (dashed)")
    return fig


def fig_cluster_sizes(table: pl.DataFrame):
    """Cluster sizes by rank (largest first), before and after SemDeDup, on a log scale."""
    fig = _figure(6.4, 4.0)
    ax = fig.subplots()
    t = table.sort("rank")
    ax.plot(t["rank"].to_numpy(), t["size"].to_numpy(), "o-", ms=3, lw=1.2, label="size", color="#1f77b4")
    after = t.sort("size_after_dedup", descending=True)
    if not t["size"].equals(t["size_after_dedup"]):
        ax.plot(np.arange(1, t.height + 1), after["size_after_dedup"].to_numpy(), "s--", ms=3, lw=1.0,
                label="after SemDeDup (sorted)", color="#ff7f0e")  # fmt: skip
    _log_ticks(ax.yaxis)
    ax.set_xlabel("cluster rank (1 = largest)")
    ax.set_ylabel("documents (log scale)")
    sizes = t["size"].to_numpy()
    ax.set_title(
        f"{t.height} clusters: median {np.median(sizes):g}, max {sizes.max()}, empty {(sizes == 0).sum()}", fontsize=10
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def fig_domain_share(table: pl.DataFrame, fraction: float):
    """Kept share per domain (rows) and strategy (columns) at one keep fraction, as an annotated heatmap."""
    t = table.filter(pl.col("keep_fraction") == fraction)
    strategies = list(dict.fromkeys(t["strategy"].to_list()))
    totals = (
        t.group_by("domain").agg(pl.col("documents").first()).sort(["documents", "domain"], descending=[True, False])
    )
    domains = totals["domain"].to_list()
    grid = np.full((len(domains), len(strategies)), np.nan)
    for r in t.iter_rows(named=True):
        grid[domains.index(r["domain"]), strategies.index(r["strategy"])] = r["kept_share"]
    fig = _figure(1.3 * len(strategies) + 3.6, 0.36 * len(domains) + 2.4)
    ax = fig.subplots()
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto")
    for i in range(len(domains)):
        for j in range(len(strategies)):
            v = grid[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    ax.set_xticks(range(len(strategies)), strategies, rotation=30, ha="right")
    docs = dict(zip(totals["domain"].to_list(), totals["documents"].to_list(), strict=True))
    ax.set_yticks(range(len(domains)), [f"{d} ({docs[d]:,})" for d in domains])
    ax.set_xlabel("strategy")
    ax.set_ylabel("domain (documents)")
    ax.set_title(f"Share of each domain's documents kept at keep fraction {fraction:g}", fontsize=10)
    fig.colorbar(im, ax=ax, label="kept share")
    return fig


def fig_law_prediction(table: pl.DataFrame, budget: int):
    """The Goyal law's predicted error against the kept pool's unique tokens, with the pruning-curve points."""
    fig = _figure(8.0, 4.6)
    ax = fig.subplots()
    curve = table.filter(pl.col("kind") == "curve").sort("unique_tokens")
    ax.plot(curve["unique_tokens"].to_numpy(), curve["predicted_error"].to_numpy(), color="black", lw=1.5,
            label="law (one pool)")  # fmt: skip
    for r in table.filter(pl.col("kind") == "region").iter_rows(named=True):
        colour = "#d62728" if r["region"] == "beyond max_repeats" else "#7f7f7f"
        if r["unique_tokens_end"] > r["unique_tokens"]:
            ax.axvspan(r["unique_tokens"], r["unique_tokens_end"], color=colour, alpha=0.12, label=r["region"])
    pts = table.filter(pl.col("kind") == "point")
    for s in dict.fromkeys(pts["strategy"].to_list()):
        g = pts.filter(pl.col("strategy") == s)
        st = _style(s)
        ax.scatter(g["unique_tokens"].to_numpy(), g["predicted_error"].to_numpy(), s=22, color=st["color"],
                   marker=st["marker"], label=s, zorder=3)  # fmt: skip
    ax.axvline(budget, color="#2ca02c", ls=":", lw=1.2, label=f"budget ({budget:,.0f} tokens)")
    _log_ticks(ax.xaxis, compact=True)
    ax.set_xlim(curve["unique_tokens"].min(), curve["unique_tokens"].max())
    ax.set_xlabel("unique tokens of the kept pool (E, whitespace words)")
    ax.set_ylabel("predicted error at the budget")
    ax.grid(alpha=0.3, which="both")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper", frameon=False)
    ax.set_title("Goyal et al. 2024 law: the kept set as one pool, trained for the budget", fontsize=10)
    return fig


def fig_law_fit(table: pl.DataFrame):
    """The Goyal law fitted to the proxy-LM checkpoints: observed points, fitted curves, extrapolated region."""
    from matplotlib import colormaps  # lazy (module doc)
    from matplotlib.lines import Line2D

    obs = table.filter(pl.col("kind") == "observed")
    fit = table.filter(pl.col("kind") == "fitted")
    strategies = list(dict.fromkeys(obs["strategy"].to_list()))
    ncols = min(4, max(1, len(strategies)))
    nrows = math.ceil(len(strategies) / ncols)
    fig = _figure(max(3.8 * ncols, 9.0), 3.3 * nrows + 1.2)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True).ravel()
    fractions = sorted(set(obs["keep_fraction"].to_list()))
    cmap = colormaps["viridis"]
    color = {fr: cmap(i / max(1, len(fractions) - 1)) for i, fr in enumerate(fractions)}
    train_max = obs.filter(~pl.col("heldout"))["tokens_seen"].max()
    x_max = fit["tokens_seen"].max()
    for ax, s in zip(axes, strategies, strict=False):
        ax.axvspan(train_max, x_max, color="#7f7f7f", alpha=0.12)
        for fr in fractions:
            g = fit.filter((pl.col("strategy") == s) & (pl.col("keep_fraction") == fr))
            ax.plot(g["tokens_seen"].to_numpy(), g["predicted"].to_numpy(), color=color[fr], lw=1.2)
            o = obs.filter((pl.col("strategy") == s) & (pl.col("keep_fraction") == fr))
            tr, ho = o.filter(~pl.col("heldout")), o.filter(pl.col("heldout"))
            ax.scatter(tr["tokens_seen"].to_numpy(), tr["loss"].to_numpy(), color=color[fr], s=18, zorder=3)
            ax.scatter(ho["tokens_seen"].to_numpy(), ho["loss"].to_numpy(), facecolors="none", edgecolors=color[fr],
                       s=40, lw=1.4, zorder=3)  # fmt: skip
        _log_ticks(ax.xaxis, compact=True)
        _log_ticks(ax.yaxis, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0))
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("training tokens seen")
        ax.set_ylabel("held-out loss (nats/byte)")
        ax.grid(alpha=0.3, which="both")
    for ax in axes[len(strategies) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=color[fr], marker="o", lw=1.2, label=f"keep {fr:g}") for fr in fractions]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="none", mec="black", label="held out (last checkpoint)"),
        Line2D([], [], color="#7f7f7f", alpha=0.4, lw=8, label="extrapolated"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False, fontsize=8)
    fig.suptitle("Goyal et al. 2024 law fitted to the proxy LM (pool = strategy, E = its kept tokens)")
    return fig
