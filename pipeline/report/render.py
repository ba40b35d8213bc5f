"""``report.md`` and ``report.html``: the report as a list of blocks, written as markdown or as one self-contained
HTML page (figures embedded)."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

import winnow
from winnow.core.rundir import RunDir
from winnow.pipeline.report.scores import RunScores

__all__ = ["Block", "curves_markdown", "fmt", "report_blocks", "to_html", "to_markdown"]

Block = tuple  # ("h", level, text) | ("p", text) | ("table", header, rows) | ("img", file, alt) | ("ul", items)


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(v):
            return "–"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.{digits}g}"
    return str(v)


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]))
        elif b[0] == "table":
            header, rows = b[1], b[2]
            lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1]})")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def to_html(blocks: Sequence[Block], images: dict[str, bytes], title: str) -> str:
    css = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 7px}"
        "th{background:#f3f3f3}td{text-align:right}td:first-child{text-align:left}img{max-width:100%}"
        "code{background:#f3f3f3;padding:0 3px}"
    )
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{css}</style></head><body>"]  # fmt: skip
    for b in blocks:
        if b[0] == "h":
            out.append(f"<h{b[1]}>{_inline_html(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif b[0] == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(x)}</li>" for x in b[1]) + "</ul>")
        elif b[0] == "table":
            head = "".join(f"<th>{_inline_html(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b[0] == "img":
            data = base64.b64encode(images[b[1]]).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(b[1])}</figcaption></figure>")  # fmt: skip
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _stats_table(rd: RunDir) -> Block | None:
    if not rd.exists("stats.json"):
        return None
    stats = json.loads(rd.read_text("stats.json"))
    rows = []
    for name, s in stats.get("stages", {}).items():
        seconds = s.get("seconds") or 0.0
        rate = f"{s.get('kept', 0) / seconds:,.1f}" if seconds else "–"
        rows.append([name, fmt(s.get("input")), fmt(s.get("kept")), fmt(s.get("dropped")),
                     fmt(s.get("rejected")), f"{seconds:,.1f}", rate])  # fmt: skip
    return ("table", ["stage", "input", "kept", "dropped", "rejected", "seconds", "docs/s"], rows)


def _plan_blocks(rd: RunDir) -> list[Block]:
    if not rd.exists("mixture_plan.json"):
        return [("p", "No `mixture_plan.json` in the run: run `winnow mix` to plan a mixture.")]
    plan = json.loads(rd.read_text("mixture_plan.json"))
    choice, budget, law = plan["choice"], plan["budget"], plan["law"]
    rows = [
        [c["m"], ", ".join(c["quality_buckets"]), fmt(c["unique_tokens"]), fmt(c["unique_epochs"]),
         fmt(c["predicted_error"]), fmt(c["within_cap"]), "**chosen**" if c["chosen"] else ""]
        for c in plan["candidates"]
    ]  # fmt: skip
    blocks: list[Block] = [
        ("p", f"Budget {budget['tokens']:,} tokens ({budget['source']}); the plan trains on the top "
              f"{choice['m']} quality bucket(s): {', '.join(choice['quality_buckets'])} (Goyal et al. law, "
              f"a = {law['a']['value']:g}, d = {law['d']['value']:g})."),
        ("p", f"Why: {choice['reason']}."),
        ("table", ["m", "quality buckets", "unique tokens", "epochs", "predicted error", "within cap", ""], rows),
    ]  # fmt: skip
    if plan.get("warnings"):
        blocks.append(("ul", [f"plan warning: {w}" for w in plan["warnings"]]))
    return blocks


def curves_markdown(curves: pl.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The pruning-curves table as report rows (the main columns, formatted)."""
    cols = ["strategy", "keep_fraction", "n_kept", "tokens_kept", "mean_quality_score", "cluster_coverage",
            "domain_entropy", "dup_rate", "predicted_error", "proxy_loss", "proxy_loss_sd"]  # fmt: skip
    if "n_draws" in curves.columns and (curves["n_draws"] != curves["n_kept"]).any():
        cols.insert(3, "n_draws")  # the quality strategies upsampled some strata
    cols = [c for c in cols if c in curves.columns and (c != "proxy_loss_sd" or curves[c].is_not_null().any())]
    rows = [[fmt(r[c]) for c in cols] for r in curves.iter_rows(named=True)]
    return cols, rows


def _run_blocks(scores: RunScores) -> list[Block]:
    """Title, the corpus, ``stats.json``, the run's own prune decision and its mixture plan."""
    rd, cfg, f = scores.run, scores.cfg, scores.frame
    name = cfg.run.name or rd.url.rsplit("/", 1)[-1]
    blocks: list[Block] = [
        ("h", 1, f"winnow report: {name}"),
        ("p", f"{f.height:,} documents in {f['stem'].n_unique()} shard(s), "
              f"{int(f['n_words'].cast(pl.Float64).fill_null(0).sum()):,} whitespace words. Config hash "
              f"`{cfg.fingerprint()}`, winnow {winnow.__version__}. Clusters: {fmt(scores.clusters)} "
              f"(k = {cfg.cluster.k}), SemDeDup: {fmt(scores.dedup)} (eps = {cfg.dedup.eps:g}), quality scores: "
              f"{fmt(scores.quality)} ({cfg.score.backend}), domains from `{scores.domain_column}`."),
        ("h", 2, "Run summary (stats.json)"),
    ]  # fmt: skip
    stats = _stats_table(rd)
    blocks.append(stats if stats else ("p", "No `stats.json` in the run."))
    if rd.exists("prune.json"):
        p = json.loads(rd.read_text("prune.json"))
        reasons = ", ".join(f"{k} {v:,}" for k, v in (p.get("dropped_by_reason") or {}).items()) or "none"
        blocks.append(("p", f"The run's own decision: strategy `{p.get('strategy')}`, target "
                            f"{fmt(p.get('target'))}, kept {p.get('kept', 0):,} of {p.get('n', 0):,} "
                            f"(dropped: {reasons})."))  # fmt: skip
    blocks += [("h", 2, "Mixture plan"), *_plan_blocks(rd)]
    return blocks


def _curves_blocks(cfg, curves: pl.DataFrame, budget: int, proxy, proxy_info: dict[str, Any]) -> list[Block]:
    """The pruning-curves section: what the columns mean, the table, the figure and the proxy LM's setup."""
    blocks: list[Block] = [
        ("h", 2, "Pruning curves"),
        ("p", "Every strategy at every keep fraction, decided by the prune stage's own function from the stored "
              "scores (no re-embedding, re-clustering or re-deduplication). `tokens_kept`: whitespace words × "
              "repeat; `cluster_coverage`: share of non-empty clusters with a kept document; `domain_entropy`: "
              "bits over the kept documents' domains; `dup_rate`: share of kept documents with `dup_max_sim ≥ "
              f"1 − eps` (eps = {cfg.dedup.eps:g}); `predicted_error`: the Goyal et al. law at a budget of "
              f"{budget:,} tokens for one pool of the kept unique tokens (it sees quantity, not quality). "
              "Full table: `pruning_curves.csv`."),
        ("table", *curves_markdown(curves)),
        ("img", "pruning_curves.png", "pruning curves"),
    ]  # fmt: skip
    if proxy is not None:
        blocks.append(("p", f"Proxy LM: {proxy.layers} layers, d = {proxy.d_model}, context {proxy.context}, "
                            f"{int(curves['proxy_params'].drop_nulls().max() or 0):,} parameters, tokenizer "
                            f"{proxy_info.get('tokenizer', '?')} (vocabulary {proxy_info.get('vocab', '?')}), "
                            f"{proxy.tokens_trained:,} training tokens per point (batch {proxy.batch_size}, lr "
                            f"{proxy.lr:g}, seed {proxy.seed}, {proxy.repeats} run(s) per point) on "
                            f"{proxy_info.get('device')}; held-out slice: "
                            f"{proxy_info.get('heldout_documents', 0):,} documents "
                            f"({proxy.heldout_fraction:.0%}, excluded from every training set), "
                            f"{proxy_info.get('heldout_tokens', 0):,} tokens evaluated; "
                            f"{proxy_info.get('trained_points', 0)} distinct training sets. `proxy_loss` is the mean "
                            f"over runs, in nats per token, on {proxy_info.get('primary_eval', 'the held-out slice')} "
                            "(`proxy_loss_se`: its standard error; `proxy_bpb`: bits per byte)."))  # fmt: skip
    return blocks


def _law_blocks(law, fit_json: dict | None) -> list[Block]:
    """The scaling-law section: the single-pool parameters and, with the proxy LM, the law fitted to it."""
    p_all = law.bucket("all")
    blocks: list[Block] = [
        ("h", 2, "Scaling law"),
        ("table", ["parameter", "value", "source"], [
            ["a", fmt(law.a), law.a_source], ["d", fmt(law.d), law.d_source],
            ["b (pool all)", fmt(p_all.b), p_all.source], ["tau (pool all)", fmt(p_all.tau), p_all.source],
        ]),
        ("img", "law_prediction.png", "law prediction"),
    ]  # fmt: skip
    if fit_json is not None:
        pools = ", ".join(f"{p['name']}: b = {p['b']:.3g}, tau = {p['tau']:.3g}" for p in fit_json["params"]["pools"])
        blocks += [
            ("p", f"Fitted to the proxy LM's checkpoints (`law_fit.csv`, `law_fit.json`): a = "
                  f"{fit_json['params']['a']:.3g}, d = {fit_json['params']['d']:.3g}; {pools}. Mean relative error "
                  f"{fmt(fit_json['train_rel_error'])} on the training checkpoints, "
                  f"{fmt(fit_json['heldout_rel_error'])} on the held-out last checkpoints."),
            ("img", "law_fit.png", "law fit"),
        ]  # fmt: skip
    return blocks


def report_blocks(
    scores: RunScores, curves, law, budget, ref_fraction, figures, proxy, proxy_info, fit_json, notes, prefilter=()
):
    """Every block of ``report.md`` / ``report.html``, in order (``prefilter``: the pre-filter funnel's blocks)."""
    blocks = _run_blocks(scores) + list(prefilter) + _curves_blocks(scores.cfg, curves, budget, proxy, proxy_info)
    if "score_histograms" in figures:
        blocks += [("h", 2, "Scores"), ("img", "score_histograms.png", "score histograms")]
    if "cluster_sizes" in figures:
        blocks += [("h", 2, "Clusters"), ("img", "cluster_sizes.png", "cluster sizes")]
    blocks += [("h", 2, "Domains"), ("p", f"Share of each domain's documents kept at keep fraction "
                                          f"{ref_fraction:g}; every fraction is in `domain_share.csv`."),
               ("img", "domain_share.png", "kept share per domain")]  # fmt: skip
    blocks += _law_blocks(law, fit_json)
    if notes:
        blocks += [("h", 2, "Notes"), ("ul", list(notes))]
    return blocks
