"""Run reports: pruning curves from stored scores, a measured proxy-LM curve, figures and ``report.md`` (issue #7).

``winnow report --run DIR`` writes ``DIR/report/``. Data first, then figures (STYLE rule 24): every PNG is drawn
from the CSV of the same name next to it, by one function that returns a ``matplotlib.figure.Figure`` (Agg canvas,
no pyplot state, no ``rcParams`` changes).

**Pruning curves** (``pruning_curves.csv``). For every strategy of :data:`CURVE_STRATEGIES` that the run's scores
support and every keep fraction, :func:`winnow.pipeline.prune.decide` — the same pure function the prune stage
calls — is run on the stored columns (assignments, SemDeDup similarities, quality ratings) with ``prune.strategy`` and
``prune.keep_fraction`` replaced. Nothing is embedded, clustered or deduplicated again. One row per point:

====================== =======================================================================================
``target``             N = ``round(keep_fraction · documents)``
``n_kept``             distinct documents kept
``n_draws``            documents drawn, repeats included (the quality strategies upsample short strata; = n_kept
                       for the others)
``tokens_kept``        Σ ``n_words`` × repeat over the kept documents (whitespace words, as ``quality/``'s
                       ``n_words`` and the mixer's default token count)
``unique_tokens_kept`` Σ ``n_words`` over the distinct kept documents
``mean_quality_score`` mean ``quality_score`` of the draws (empty without quality scores)
``cluster_coverage``   share of the non-empty clusters with at least one kept document
``domain_entropy``     Shannon entropy, in bits, of the draws over domains (``quality_domain``; ``source`` when
                       the run has no quality scores; a null domain counts as ``unknown``)
``dup_rate``           share of the distinct kept documents that are semantic duplicates at ``dedup.eps``
                       (``dup_max_sim ≥ 1 − eps``: the stored SemDeDup definition, whether or not the
                       higher-ranked member they duplicate is kept)
``budget_tokens``      the training budget: ``mix.budget_tokens`` (or ``mix.flops / (6 · mix.model_params)``) of
                       the run's config, else the corpus's tokens (one epoch of the unpruned corpus)
``predicted_error``    Goyal et al. (2024) error at ``budget_tokens`` of the kept set taken as **one pool** of
                       ``unique_tokens_kept`` unique tokens (:func:`winnow.mixers.laws.goyal_error`)
====================== =======================================================================================

The predicted error uses the parameters the mixer would use for a single bucket named ``all``
(:func:`winnow.mixers.planner.resolve_law`: ``mix.law.a``/``d``/``buckets.all``, then ``mix.law.fitted``, then the
reference defaults ``a = 0.025``, ``d = 0.1``, ``b = -0.12``, ``tau = 6``). With one ``b`` for every kept set, the
prediction sees **quantity and repetition only**: two strategies keeping the same number of tokens get the same
predicted error. Upsampled repeats are not unique tokens, so the pool size is ``unique_tokens_kept``. Quality
differences between strategies show up in ``mean_quality_score`` and, measured, in ``proxy_loss``.

**Proxy LM** (``--proxy lm``, :mod:`winnow.pipeline.report.proxy_lm`). A small causal LM is trained from scratch on
each point's kept documents (minus a fixed held-out 5% of the corpus, excluded from every training set) for a fixed
number of tokens, with one BPE tokenizer trained once per report on the corpus (``report/tokenizer.json``; or bytes,
or the user's), and its loss on the primary eval set (the first ``--eval`` shard, else the held-out slice) is
``proxy_loss`` (nats per token; over ``repeats`` seeds ``seed, seed + 1, …`` the mean, with ``proxy_loss_se``; bits
per byte in ``proxy_bpb``; every eval set has its own ``eval_<name>_*`` columns). Points with the same training
set (e.g. every strategy at fraction 1) are trained once. The budget and model size are columns of the CSV
(``proxy_tokens``, ``proxy_params``, ``proxy_layers``, ``proxy_d_model``, ``proxy_context``, ``proxy_seed``,
``proxy_repeats``), as are the training pool (``proxy_pool_tokens``) and the epochs over it (``proxy_epochs``). The
held-out loss at evenly spaced checkpoints goes to ``proxy_checkpoints.csv`` and ``law_fit.csv``: the Goyal law is
fitted to it (``winnow.mixers.fit.fit_goyal``, one pool per strategy, samples = tokens seen, pool size = the training
pool), the last checkpoint of every point held out, and ``law_fit.png`` shows the observed points, the fitted curves
and the extrapolated region.

**Figures**: ``pruning_curves.png`` (every metric against the keep fraction, one line per strategy),
``score_histograms.png`` (quality score, distance to centroid, SemDeDup similarity, with the cut that keeps each
fraction and the duplicate threshold), ``cluster_sizes.png`` (cluster sizes by rank, log scale), ``domain_share.png``
(kept share per domain and strategy at one fraction), ``law_prediction.png`` (the law's predicted error against the
kept pool's unique tokens) and, with the proxy, ``law_fit.png``. ``report.md`` links them; ``report.html`` embeds
them and needs nothing else.

**Modules** (this one re-exports their public names):

============================================ ==================================================================
:mod:`~winnow.pipeline.report.scores`        loading a run: :func:`load_run`, :class:`RunScores`
:mod:`~winnow.pipeline.report.decisions`     the only import of :mod:`winnow.pipeline.prune`: stored scores,
                                             supported strategies, one decision per point
:mod:`~winnow.pipeline.report.curves`        the strategy × keep-fraction table and the kept-set metrics
:mod:`~winnow.pipeline.report.law`           the budget, the law's predictions and its fit to the proxy LM
:mod:`~winnow.pipeline.report.tables`        score histograms, cluster sizes, kept share per domain
:mod:`~winnow.pipeline.report.proxy`         the proxy LM over the points (model and trainer: ``proxy_lm``)
:mod:`~winnow.pipeline.report.figures`       one matplotlib figure per table
:mod:`~winnow.pipeline.report.render`        ``report.md`` / ``report.html``
:mod:`~winnow.pipeline.report.build`         :func:`build_report`: every table, figure and page of a run
:mod:`~winnow.pipeline.report.command`       the ``winnow report`` typer command
============================================ ==================================================================
"""

from __future__ import annotations

from winnow.pipeline.report.build import REPORT_DIR, Report, build_report
from winnow.pipeline.report.command import report_command
from winnow.pipeline.report.curves import DEFAULT_FRACTIONS, entropy_bits, kept_metrics, pruning_curves
from winnow.pipeline.report.decisions import CURVE_STRATEGIES, Point, supported_strategies
from winnow.pipeline.report.figures import (
    METRICS,
    fig_cluster_sizes,
    fig_domain_share,
    fig_law_fit,
    fig_law_prediction,
    fig_pruning_curves,
    fig_score_histograms,
)
from winnow.pipeline.report.law import (
    law_fit_table,
    law_prediction_table,
    predicted_error,
    resolve_budget,
    single_pool_law,
)
from winnow.pipeline.report.proxy import proxy_curves
from winnow.pipeline.report.render import curves_markdown
from winnow.pipeline.report.scores import RunScores, load_run
from winnow.pipeline.report.tables import cluster_size_table, domain_share_table, score_histogram_table

__all__ = [
    "CURVE_STRATEGIES",
    "DEFAULT_FRACTIONS",
    "METRICS",
    "REPORT_DIR",
    "Point",
    "Report",
    "RunScores",
    "build_report",
    "cluster_size_table",
    "curves_markdown",
    "domain_share_table",
    "entropy_bits",
    "fig_cluster_sizes",
    "fig_domain_share",
    "fig_law_fit",
    "fig_law_prediction",
    "fig_pruning_curves",
    "fig_score_histograms",
    "kept_metrics",
    "law_fit_table",
    "law_prediction_table",
    "load_run",
    "predicted_error",
    "proxy_curves",
    "pruning_curves",
    "report_command",
    "resolve_budget",
    "score_histogram_table",
    "single_pool_law",
    "supported_strategies",
]
