"""The ``student`` rater backend: a small multi-head model over the stored embeddings (DESIGN §3.6, backend 2).

The recipe of FineWeb-Edu's and NeMo Curator's classifiers: rate a sample with the ``llm`` backend (or take any
ratings file), train a small model from the document embeddings the run already stored to those ratings, then
rate the whole corpus at embedding cost.

**Model** (``StudentModel``). The input is ``[e·√d ‖ z]``: the L2-normalised embedding ``e`` (dimension ``d``,
scaled by √d so that its components have unit variance like the rest) and, unless disabled, the
``winnow.scorers.heuristic`` text features ``z`` (51 cheap proxies: repetition, script, punctuation, word statistics),
each ``sign(x)·log1p(|x|)``, standardised with the training mean and standard deviation, clipped to ±5, a
feature a document is too short to measure (NaN) at 0 (the mean). A shared MLP trunk (``layers`` × Linear →
GELU → Dropout, width ``hidden``) feeds two heads:

* a **regression head** of 14 outputs (the 13 criteria, then the overall rating), trained with a masked MSE on
  ``(rating − 3) / 2``;
* a **domain head** of 15 logits (``DOMAINS`` order), trained with cross-entropy.

*Why regression and not ordinal/classification heads over 1..5*: ``quality_score`` must be continuous on the
1..5 scale, and the conditional mean a regression head estimates is that number directly (FineWeb-Edu's
classifier is a regression head on its 0..5 score for the same reason); it ranks documents within one rating
level, which the held-out Spearman measures; squared error costs a 1-for-5 mistake more than a 4-for-5 one, as
the ordinal scale wants; and 14 outputs instead of 70 keep the head small for ~1,000–10,000 training ratings.
An expected value over 5 class probabilities would give a continuous score as well, but is no better for these
goals, and the class argmax throws the order away. At rating time the 14 outputs are clipped to [1, 5];
``quality_<criterion>`` and ``quality_overall`` are them rounded half up (int8), ``quality_score`` is the
clipped continuous overall output (float32) and ``quality_domain`` the argmax of the domain head.

**Training** (``train_student``). Rows are split by a hash of ``(seed, id)``: the ``holdout`` share with the
smallest hashes is held out and never seen in training (the split does not depend on the row order). Of the
rest, ``val_fraction`` (the next smallest hashes) decides early stopping: the weights of the epoch with the best
validation loss (rating MSE and domain cross-entropy, each relative to that of the best constant guess) are
kept. A missing rating is masked out of the loss (a row with no
rating and no domain at all is skipped and counted). The report gives, on the held-out rows only: per rating
column the MAE of the integer ratings the rater writes (with the MAE of the best constant, the training median,
beside it) and the Spearman correlation of the continuous predictions; their means; the domain accuracy and the
accuracy of always answering the training set's most frequent domain. The same means on the training rows show
the gap (a model that memorised noise is high there and ~0 on the held-out rows).

**Files** of a model directory: ``model.safetensors`` (the tensors; nothing is unpickled when loading),
``student.json`` (format version, embedding dimension, the embedding model the embeddings came from, criteria
and domain order, feature names and standardisation, architecture, training settings, the report) and
``report.json`` (the report alone).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from loguru import logger
from pydantic import Field

from winnow.core.device import torch_device
from winnow.core.errors import ConfigError, CurationError
from winnow.core.section import Section
from winnow.embedding.embed import Embedder, model_label
from winnow.embedding.section import EmbedSection
from winnow.scorers.base import CRITERIA, CRITERION_COLUMNS, DOMAINS, QUALITY_SCHEMA, Rater
from winnow.scorers.heuristic import FEATURE_NAMES, features_matrix
from winnow.scorers.registry import RATERS

#: the regression head's outputs, in order: the 13 criteria, then the overall rating
RATING_COLUMNS: tuple[str, ...] = (*CRITERION_COLUMNS, "quality_overall")
#: the domain head's classes, in order
DOMAIN_NAMES: tuple[str, ...] = tuple(DOMAINS.values())
_DOMAIN_INDEX: dict[str, int] = {
    **{name: i for i, name in enumerate(DOMAIN_NAMES)},
    **{letter: i for i, letter in enumerate(DOMAINS)},
}

FORMAT = "winnow-student"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "student.json"
REPORT_FILE = "report.json"

#: ratings are regressed as (rating - CENTER) / SCALE
TARGET_CENTER = 3.0
TARGET_SCALE = 2.0
#: standardised text features are clipped to ±FEATURE_CLIP
FEATURE_CLIP = 5.0


class StudentSection(Section):
    """The ``student`` rater: a model trained by ``winnow train-student``.

    Args:
        model_dir: the directory ``train-student --out`` wrote (``model.safetensors`` + ``student.json``). The
            model must have been trained on embeddings of the same ``embed.model`` as the run it rates.
        batch_size: documents per forward pass.
        device: ``cpu`` (default: the model is small), ``cuda`` or ``auto`` (CUDA when available).
    """

    model_dir: str = Field(..., min_length=1)
    batch_size: int = Field(1024, ge=1, le=1_048_576)
    device: Literal["auto", "cpu", "cuda"] = "cpu"


# --------------------------------------------------------------------------------------------------- helpers


def _normalise(embeddings: np.ndarray) -> np.ndarray:
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 2:
        raise CurationError(f"embeddings must be a [n, d] matrix, got shape {e.shape}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    return e / np.where(norms > 0, norms, 1.0).astype(np.float32)


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.sign(x) * np.log1p(np.abs(x))


def text_features(texts: Sequence[str]) -> np.ndarray:
    """The raw heuristic features of ``texts`` (``[n, 51]`` float64, NaN where a feature is not measurable)."""
    return features_matrix(texts)


def round_ratings(x: np.ndarray) -> np.ndarray:
    """Continuous ratings to int8 1..5: clipped, then rounded half up."""
    return np.floor(np.clip(x, 1.0, 5.0) + 0.5).astype(np.int8)


def _spearman(pred: np.ndarray, true: np.ndarray) -> float | None:
    """Spearman's rho, or None when it is undefined (fewer than 3 values, or one side constant)."""
    if len(true) < 3 or np.ptp(true) == 0 or np.ptp(pred) == 0:
        return None
    from scipy.stats import spearmanr  # heavy (about a second to import) and only training reports need it

    rho = float(spearmanr(pred, true).statistic)
    return None if math.isnan(rho) else rho


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _split_key(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest(), "big")


def split(
    keys: Sequence[str], seed: int, holdout: float, val_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices into ``keys`` (document ids) of the held-out, validation and training rows, each sorted.

    The keys are ordered by a hash of ``(seed, key)``: the first ``round(holdout·n)`` are held out (at least one
    and at most ``n − 1`` when ``holdout > 0``), the next ``round(val_fraction·rest)`` validate (none when fewer
    than 20 rows remain), the rest train. The split depends on the set of ids and the seed, not on the row order.
    """
    n = len(keys)
    order = np.argsort(np.array([_split_key(seed, k) for k in keys], dtype=np.uint64), kind="stable")
    n_hold = int(min(max(round(holdout * n), 1), n - 1)) if holdout > 0 and n >= 2 else 0
    rest = order[n_hold:]
    n_val = int(round(val_fraction * len(rest))) if len(rest) >= 20 and val_fraction > 0 else 0
    return np.sort(order[:n_hold]), np.sort(rest[:n_val]), np.sort(rest[n_val:])


# --------------------------------------------------------------------------------------------------- model


def _build_net(in_dim: int, hidden: int, layers: int, dropout: float):
    """The network: ``trunk`` (an MLP), ``ratings`` (14 outputs) and ``domain`` (15 logits) in a ModuleDict."""
    from torch import nn  # heavy: loaded only when a student trains or rates, not when the config is read

    trunk: list[nn.Module] = []
    width = in_dim
    for _ in range(layers):
        trunk += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
        width = hidden
    return nn.ModuleDict(
        {
            "trunk": nn.Sequential(*trunk),
            "ratings": nn.Linear(width, len(RATING_COLUMNS)),
            "domain": nn.Linear(width, len(DOMAIN_NAMES)),
        }
    )


def _forward(net, x):
    h = net["trunk"](x)
    return net["ratings"](h), net["domain"](h)


class StudentModel:
    """A trained student: the torch network (shared MLP trunk, 14 rating outputs, 15 domain logits) plus what its
    inputs need (embedding dimension, feature standardisation) and its provenance, saved to and loaded from a
    directory.

    Args:
        meta: the JSON metadata (see ``new`` for the keys).
        net: the network; built from ``meta`` (randomly initialised) when None.
        device: where the network runs.
    """

    def __init__(self, meta: dict[str, Any], net: Any = None, device: str = "cpu"):
        self.meta = meta
        arch = meta["architecture"]
        if net is None:
            net = _build_net(self.input_dim, arch["hidden"], arch["layers"], arch["dropout"])
        self.device = device
        self.net = net.to(device)
        self.net.eval()

    @classmethod
    def new(
        cls,
        embedding_dim: int,
        *,
        embed_model: str | None,
        feature_mean: np.ndarray | None,
        feature_std: np.ndarray | None,
        hidden: int = 256,
        layers: int = 2,
        dropout: float = 0.1,
        device: str = "cpu",
    ) -> StudentModel:
        """A randomly initialised model (seed torch first for a reproducible one); no text features when
        ``feature_mean`` is None."""
        use_features = feature_mean is not None
        meta: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "embedding_dim": int(embedding_dim),
            "embed_model": embed_model,
            "embedding_scale": math.sqrt(embedding_dim),
            "text_features": use_features,
            "feature_names": list(FEATURE_NAMES) if use_features else [],
            "feature_transform": "signed_log1p",
            "feature_mean": [float(v) for v in feature_mean] if use_features else [],
            "feature_std": [float(v) for v in feature_std] if use_features else [],  # type: ignore[union-attr]
            "feature_clip": FEATURE_CLIP,
            "criteria": list(CRITERIA),
            "rating_columns": list(RATING_COLUMNS),
            "domains": list(DOMAIN_NAMES),
            "target_center": TARGET_CENTER,
            "target_scale": TARGET_SCALE,
            "architecture": {"hidden": int(hidden), "layers": int(layers), "dropout": float(dropout), "act": "gelu"},
        }
        return cls(meta, device=device)

    # ----------------------------------------------------------------------------------------------- inputs

    @property
    def embedding_dim(self) -> int:
        return int(self.meta["embedding_dim"])

    @property
    def uses_text_features(self) -> bool:
        return bool(self.meta["text_features"])

    @property
    def input_dim(self) -> int:
        return self.embedding_dim + len(self.meta["feature_names"])

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """Raw features to the model's standardised inputs (float32)."""
        mean = np.asarray(self.meta["feature_mean"], dtype=np.float64)
        std = np.asarray(self.meta["feature_std"], dtype=np.float64)
        z = (_signed_log1p(np.asarray(features, dtype=np.float64)) - mean) / std
        clip = float(self.meta["feature_clip"])
        z = np.nan_to_num(z, nan=0.0, posinf=clip, neginf=-clip)
        return np.clip(z, -clip, clip).astype(np.float32)

    def inputs(
        self, embeddings: np.ndarray, texts: Sequence[str] | None = None, features: np.ndarray | None = None
    ) -> np.ndarray:
        """``[n, input_dim]`` float32 model inputs; ``features`` (raw, precomputed) spares recomputing them."""
        e = _normalise(embeddings)
        if e.shape[1] != self.embedding_dim:
            raise CurationError(
                f"the student model takes {self.embedding_dim}-dimensional embeddings, got {e.shape[1]}: it was "
                f"trained on embeddings of {self.meta.get('embed_model')!r}"
            )
        x = e * np.float32(self.meta["embedding_scale"])
        if not self.uses_text_features:
            return x
        if features is None:
            if texts is None:
                raise CurationError("this student model uses text features: pass the texts")
            if len(texts) != len(e):
                raise CurationError(f"{len(texts)} texts for {len(e)} embeddings")
            features = text_features(texts)
        if len(features) != len(e):
            raise CurationError(f"{len(features)} feature rows for {len(e)} embeddings")
        return np.concatenate([x, self.standardise(features)], axis=1)

    # ----------------------------------------------------------------------------------------------- predict

    def predict_inputs(self, x: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """``(ratings [n, 14] float32 on the 1..5 scale, unclipped; domain probabilities [n, 15])``."""
        import torch  # heavy (see _build_net)

        self.net.eval()
        n = len(x)
        ratings = np.zeros((n, len(RATING_COLUMNS)), np.float32)
        probs = np.zeros((n, len(DOMAIN_NAMES)), np.float32)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])).to(self.device)
                r, logits = _forward(self.net, xb)
                ratings[start : start + len(xb)] = (r * TARGET_SCALE + TARGET_CENTER).float().cpu().numpy()
                probs[start : start + len(xb)] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return ratings, probs

    def predict(
        self,
        embeddings: np.ndarray,
        texts: Sequence[str] | None = None,
        *,
        features: np.ndarray | None = None,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Continuous ratings ``[n, 14]`` (clipped to [1, 5]) and domain probabilities ``[n, 15]``."""
        ratings, probs = self.predict_inputs(self.inputs(embeddings, texts, features), batch_size)
        return np.clip(ratings, 1.0, 5.0), probs

    def quality_table(self, ratings: np.ndarray, probs: np.ndarray) -> pa.Table:
        """Predictions to a ``QUALITY_SCHEMA`` table."""
        ints = round_ratings(ratings)
        cols = [pa.array(ints[:, j], pa.int8()) for j in range(len(RATING_COLUMNS))]
        cols.append(pa.array(np.clip(ratings[:, -1], 1.0, 5.0).astype(np.float32), pa.float32()))
        names = np.asarray(DOMAIN_NAMES, dtype=object)
        cols.append(pa.array(names[np.argmax(probs, axis=1)].tolist() if len(probs) else [], pa.string()))
        return pa.Table.from_arrays(cols, schema=QUALITY_SCHEMA)

    # ----------------------------------------------------------------------------------------------- files

    def save(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write ``model.safetensors`` and ``student.json`` into ``out_dir`` (created)."""
        from safetensors.torch import save_file  # pulls in torch: heavy (see _build_net)

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.net.state_dict().items()}
        tmp = out / (WEIGHTS_FILE + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "version": str(FORMAT_VERSION)})
        os.replace(tmp, out / WEIGHTS_FILE)
        _write_json(out / META_FILE, self.meta)
        return out

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str], device: str = "cpu") -> StudentModel:
        """Load a directory written by ``save``; checks the format, the feature set and the tensor shapes.

        Raises:
            ConfigError: not a student model directory, another format version, or features that changed.
        """
        from safetensors.torch import load_file  # pulls in torch: heavy (see _build_net)

        path = Path(model_dir).expanduser()
        meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
        if not meta_path.is_file() or not weights_path.is_file():
            raise ConfigError(
                f"score.student.model_dir: {path} is not a student model directory (needs {META_FILE} and "
                f"{WEIGHTS_FILE}; train one with `winnow train-student`)"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ConfigError(f"{meta_path}: not valid JSON ({e})") from None
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ConfigError(
                f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}; this winnow reads "
                f"{FORMAT!r} version {FORMAT_VERSION}: retrain the student"
            )
        if meta["rating_columns"] != list(RATING_COLUMNS) or meta["domains"] != list(DOMAIN_NAMES):
            raise ConfigError(f"{meta_path}: the criteria or domains differ from this winnow's: retrain the student")
        if meta["text_features"] and meta["feature_names"] != list(FEATURE_NAMES):
            raise ConfigError(
                f"{meta_path}: the model was trained on other text features than winnow.scorers.heuristic "
                "computes now: retrain the student"
            )
        device = torch_device(device, "student device")
        model = cls(meta, device="cpu")
        state = load_file(str(weights_path), device="cpu")
        try:
            model.net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ConfigError(f"{weights_path}: the tensors do not match {META_FILE} ({e})") from None
        model.net.to(device)
        model.device = device
        model.net.eval()
        return model


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------- training


def ratings_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``(ratings [n, 14] float64 with NaN where null, domain index [n] int64 with -1 where null)``.

    Domains may be names (``Medicine``) or letters (``A``).

    Raises:
        CurationError: a rating column is missing or not numeric, a rating is outside 1..5, a domain is unknown.
    """
    missing = [c for c in (*RATING_COLUMNS, "quality_domain") if c not in table.column_names]
    if missing:
        raise CurationError(f"the ratings lack the column(s) {', '.join(missing)}")
    n = table.num_rows
    ratings = np.full((n, len(RATING_COLUMNS)), np.nan)
    for j, name in enumerate(RATING_COLUMNS):
        col = table.column(name)
        if pa.types.is_null(col.type):
            continue
        try:
            ratings[:, j] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise CurationError(f"ratings column {name} is not numeric ({col.type}): {e}") from None
    bad = np.isfinite(ratings) & ((ratings < 1) | (ratings > 5))
    if bad.any():
        j = int(np.argwhere(bad)[0][1])
        raise CurationError(f"ratings column {RATING_COLUMNS[j]} holds values outside 1..5 (e.g. {ratings[bad][0]})")
    ratings[~np.isfinite(ratings)] = np.nan
    values = table.column("quality_domain").to_pylist()
    unknown = sorted({str(v) for v in values if v is not None and str(v) not in _DOMAIN_INDEX})
    if unknown:
        raise CurationError(
            f"quality_domain holds unknown domain(s) {unknown[:5]}; allowed: {', '.join(DOMAIN_NAMES)} (or A..O)"
        )
    domains = np.array([-1 if v is None else _DOMAIN_INDEX[str(v)] for v in values], dtype=np.int64)
    return ratings, domains


def _metrics(
    pred: np.ndarray, probs: np.ndarray, y: np.ndarray, dom: np.ndarray, medians: np.ndarray, majority: int
) -> dict[str, Any]:
    """Per rating column MAE (of the integer ratings) and Spearman (of the continuous ones), domain accuracy."""
    ints = round_ratings(pred)
    cols: dict[str, Any] = {}
    for j, name in enumerate(RATING_COLUMNS):
        m = np.isfinite(y[:, j])
        key = name.removeprefix("quality_")
        if not m.any():
            cols[key] = {"n": 0, "mae": None, "baseline_mae": None, "spearman": None}
            continue
        cols[key] = {
            "n": int(m.sum()),
            "mae": float(np.mean(np.abs(ints[m, j] - y[m, j]))),
            "baseline_mae": float(np.mean(np.abs(medians[j] - y[m, j]))),
            "spearman": _spearman(pred[m, j], y[m, j]),
        }
    dm = dom >= 0
    crit = [cols[c] for c in CRITERIA]
    return {
        "ratings": cols,
        "criteria_mae": _mean([c["mae"] for c in crit]),
        "criteria_spearman": _mean([c["spearman"] for c in crit]),
        "overall_mae": cols["overall"]["mae"],
        "overall_spearman": cols["overall"]["spearman"],
        "n_domain": int(dm.sum()),
        "domain_accuracy": float(np.mean(np.argmax(probs[dm], axis=1) == dom[dm])) if dm.any() else None,
        "domain_majority_baseline": float(np.mean(dom[dm] == majority)) if dm.any() else None,
    }


def _check_settings(holdout: float, val_fraction: float, epochs: int) -> None:
    """Reject training settings out of range (before any work)."""
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"holdout must be in [0, 1), got {holdout}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")


def _split_keys(ratings_table: pa.Table) -> list[str]:
    """The keys the split hashes: the ``id`` column as strings, else the row numbers."""
    if "id" in ratings_table.column_names:
        return [str(v) for v in ratings_table.column("id").to_pylist()]
    return [str(i) for i in range(ratings_table.num_rows)]


def _raw_features(
    texts: Sequence[str] | None, features: np.ndarray | None, rows: np.ndarray, n_rows: int
) -> np.ndarray:
    """``[n_rows, 51]`` raw text features: ``features`` as given, or computed for the rated ``rows`` (NaN
    elsewhere)."""
    if features is not None:
        raw_feats = np.asarray(features, dtype=np.float64)
    else:
        if texts is None:
            raise CurationError("use_text_features needs the texts (or precomputed features)")
        if len(texts) != n_rows:
            raise CurationError(f"{len(texts)} texts for {n_rows} ratings rows")
        raw_feats = text_features([texts[i] for i in rows])
        raw_feats = _scatter(raw_feats, rows, n_rows)
    if len(raw_feats) != n_rows:
        raise CurationError(f"{len(raw_feats)} feature rows for {n_rows} ratings rows")
    return raw_feats


def _feature_standardisation(raw_feats: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the transformed features over the training rows (0 and 1 for a feature
    never measurable there)."""
    t = _signed_log1p(raw_feats[train_rows])
    t = np.where(np.isfinite(t), t, np.nan)
    with warnings.catch_warnings():  # an all-NaN feature (never measurable in training) gets mean 0, std 1
        warnings.simplefilter("ignore", RuntimeWarning)
        feat_mean = np.nan_to_num(np.nanmean(t, axis=0), nan=0.0)
        feat_std = np.nanstd(t, axis=0)
    feat_std = np.where(np.isfinite(feat_std) & (feat_std > 1e-8), feat_std, 1.0)
    return feat_mean, feat_std


def _tensors(x_all: np.ndarray, y_scaled: np.ndarray, dom_all: np.ndarray, idx: np.ndarray, device: str):
    """``(inputs, targets with 0 for missing, target mask, domain index)`` of rows ``idx`` as tensors on ``device``."""
    import torch  # heavy (see _build_net)

    y = y_scaled[idx]
    mask = np.isfinite(y)
    return (
        torch.from_numpy(x_all[idx]).to(device),
        torch.from_numpy(np.nan_to_num(y, nan=0.0).astype(np.float32)).to(device),
        torch.from_numpy(mask.astype(np.float32)).to(device),
        torch.from_numpy(dom_all[idx]).to(device),
    )


def _losses(net, x, y, m, d, smoothing: float = 0.0):
    """(masked rating MSE, domain cross-entropy over the rows with a domain; 0 when none)."""
    import torch  # heavy (see _build_net)

    r, logits = _forward(net, x)
    mse = ((r - y) ** 2 * m).sum() / m.sum().clamp(min=1.0)
    dm = d >= 0
    ce = torch.zeros((), device=x.device)
    if bool(dm.any()):
        ce = torch.nn.functional.cross_entropy(logits[dm], d[dm], label_smoothing=smoothing)
    return mse, ce


def _constant_guess_losses(train, val) -> tuple[float, float]:
    """The validation rating MSE and domain CE of the best constant guess (the training means, the training class
    frequencies): the scales the validation loss is measured in."""
    import torch  # heavy (see _build_net)

    _, yt, mt, dt = train
    # the epoch is chosen on (rating MSE, domain CE), each relative to that of the best constant guess, so neither
    # head's scale decides alone; the CE grows with over-confidence long before the accuracy falls, hence the
    # label smoothing in training
    mean_y = (yt * mt).sum(0) / mt.sum(0).clamp(min=1.0)
    base_mse = max(float(((val[1] - mean_y) ** 2 * val[2]).sum() / val[2].sum().clamp(min=1.0)), 1e-6)
    counts = torch.bincount(dt[dt >= 0], minlength=len(DOMAIN_NAMES)).float() + 1.0
    vd = val[3][val[3] >= 0]
    base_ce = max(float(-torch.log(counts / counts.sum())[vd].mean()) if len(vd) else 1.0, 1e-6)
    return base_mse, base_ce


def _train_epoch(net, opt, train, perm, batch_size: int, domain_weight: float, label_smoothing: float) -> None:
    """One pass over the training rows in the order ``perm``, in batches."""
    xt, yt, mt, dt = train
    net.train()
    for start in range(0, len(perm), batch_size):
        b = perm[start : start + batch_size]
        opt.zero_grad(set_to_none=True)
        mse, ce = _losses(net, xt[b], yt[b], mt[b], dt[b], label_smoothing)
        (mse + domain_weight * ce).backward()
        opt.step()


def _val_loss(net, val, base_mse: float, base_ce: float, domain_weight: float) -> float:
    """The validation loss: rating MSE and weighted domain CE, each relative to the constant guess's."""
    import torch  # heavy (see _build_net)

    net.eval()
    with torch.inference_mode():
        mse, ce = _losses(net, *val)
        return float(mse) / base_mse + domain_weight * float(ce) / base_ce


def _fit(
    net,
    train,
    val,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    domain_weight: float,
    label_smoothing: float,
    patience: int,
    device: str,
) -> tuple[int, int]:
    """Train ``net`` (AdamW, batches in a seeded order) for at most ``epochs``; with validation rows, stop after
    ``patience`` epochs without a better validation loss and restore the best epoch's weights.

    Returns:
        ``(epochs run, the epoch whose weights were kept)``.
    """
    import torch  # heavy (see _build_net)

    if val is not None:
        base_mse, base_ce = _constant_guess_losses(train, val)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best_loss, best_epoch, best_state = math.inf, 0, None
    epochs_run = 0
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(train[0]), generator=gen).to(device)
        _train_epoch(net, opt, train, perm, batch_size, domain_weight, label_smoothing)
        epochs_run = epoch
        if val is None:
            continue
        vloss = _val_loss(net, val, base_mse, base_ce, domain_weight)
        if vloss < best_loss - 1e-6:
            best_loss, best_epoch = vloss, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        elif epoch - best_epoch >= patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        best_epoch = epochs_run
    net.eval()
    return epochs_run, best_epoch


def _constant_baselines(y_all: np.ndarray, dom_all: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray, int]:
    """The report's baselines from the training rows: the median of each rating column (3 when it has none) and
    the most frequent domain (index 0 when none)."""
    medians = np.array(
        [np.nanmedian(y_all[train_rows, j]) if np.isfinite(y_all[train_rows, j]).any() else TARGET_CENTER
         for j in range(len(RATING_COLUMNS))]
    )  # fmt: skip
    dtrain = dom_all[train_rows]
    majority = (
        int(np.bincount(dtrain[dtrain >= 0], minlength=len(DOMAIN_NAMES)).argmax()) if (dtrain >= 0).any() else 0
    )
    return medians, majority


def _evaluate(
    model: StudentModel,
    x_all: np.ndarray,
    y_all: np.ndarray,
    dom_all: np.ndarray,
    idx: np.ndarray,
    medians: np.ndarray,
    majority: int,
) -> dict[str, Any]:
    """The metrics of the model's predictions on rows ``idx`` (see ``_metrics``)."""
    pred, probs = model.predict_inputs(x_all[idx])
    return _metrics(np.clip(pred, 1.0, 5.0), probs, y_all[idx], dom_all[idx], medians, majority)


def train_student(
    ratings_table: pa.Table,
    embeddings: np.ndarray,
    texts: Sequence[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    holdout: float = 0.2,
    epochs: int = 200,
    batch_size: int = 128,
    hidden: int = 256,
    layers: int = 2,
    dropout: float = 0.1,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    domain_weight: float = 0.5,
    label_smoothing: float = 0.1,
    val_fraction: float = 0.1,
    patience: int = 20,
    use_text_features: bool = True,
    features: np.ndarray | None = None,
    embed_model: str | None = None,
    device: str = "cpu",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a student on ratings, report it on a held-out split, and save both to ``out_dir``.

    Args:
        ratings_table: one row per document: the 14 rating columns (``quality_<criterion>``, ``quality_overall``;
            numeric 1..5, null for missing), ``quality_domain`` (a domain name or letter, or null) and, for the
            split, ``id`` (the row number when absent).
        embeddings: ``[n, d]`` document embeddings, row-aligned with ``ratings_table``.
        texts: the documents, row-aligned (needed for the text features unless ``features`` is given).
        out_dir: where ``model.safetensors``, ``student.json`` and ``report.json`` go.
        seed: seeds the split, the initialisation and the batch order.
        holdout: share of rows held out for the report (0 for none; then the report has no held-out metrics).
        epochs: at most this many passes over the training rows.
        batch_size, hidden, layers, dropout, lr, weight_decay: the optimisation (AdamW) and the trunk.
        domain_weight: weight of the domain cross-entropy against the rating MSE.
        val_fraction: share of the non-held-out rows used to pick the epoch (early stopping); none under 20 rows.
        patience: stop after this many epochs without a better validation loss.
        use_text_features: append the standardised heuristic text features to the embedding.
        features: precomputed raw features (``text_features(texts)``), to spare recomputing them.
        embed_model: the label of the embedding model (``winnow.model`` of the embeddings files), recorded.
        device: ``cpu``, ``cuda`` or ``auto``.
        extra: entries added to the report (e.g. rows the caller skipped).

    Returns:
        The report (also in ``out_dir/report.json`` and ``student.json``).

    Raises:
        CurationError: misaligned inputs, bad ratings, or too few usable rows.
    """
    import torch  # heavy (see _build_net)

    t0 = time.perf_counter()
    _check_settings(holdout, val_fraction, epochs)
    device = torch_device(device, "student device")
    n_rows = ratings_table.num_rows
    emb = _normalise(embeddings)
    if len(emb) != n_rows:
        raise CurationError(f"{len(emb)} embeddings for {n_rows} ratings rows")
    y_all, dom_all = ratings_arrays(ratings_table)
    keys = _split_keys(ratings_table)

    rated = np.isfinite(y_all).any(axis=1) | (dom_all >= 0)
    partial = rated & ~np.isfinite(y_all).all(axis=1)
    no_domain = rated & (dom_all < 0)
    rows = np.flatnonzero(rated)
    n = len(rows)
    if n < 2:
        raise CurationError(f"{n} rated row(s) (of {n_rows}): too few to train a student")
    raw_feats = _raw_features(texts, features, rows, n_rows) if use_text_features else None

    hold_idx, val_idx, train_idx = split([keys[i] for i in rows], seed, holdout, val_fraction)
    hold_rows, val_rows, train_rows = rows[hold_idx], rows[val_idx], rows[train_idx]
    n_hold, n_val = len(hold_rows), len(val_rows)
    feat_mean, feat_std = _feature_standardisation(raw_feats, train_rows) if raw_feats is not None else (None, None)

    torch.manual_seed(seed)
    model = StudentModel.new(
        emb.shape[1], embed_model=embed_model, feature_mean=feat_mean, feature_std=feat_std,
        hidden=hidden, layers=layers, dropout=dropout, device=device,
    )  # fmt: skip
    x_all = model.inputs(emb, features=raw_feats)
    y_scaled = (y_all - TARGET_CENTER) / TARGET_SCALE
    train = _tensors(x_all, y_scaled, dom_all, train_rows, device)
    val = _tensors(x_all, y_scaled, dom_all, val_rows, device) if n_val else None
    epochs_run, best_epoch = _fit(
        model.net, train, val, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        domain_weight=domain_weight, label_smoothing=label_smoothing, patience=patience, device=device,
    )  # fmt: skip

    # the report: held-out rows only; training rows for the gap
    medians, majority = _constant_baselines(y_all, dom_all, train_rows)
    held = _evaluate(model, x_all, y_all, dom_all, hold_rows, medians, majority) if n_hold else None
    train_metrics = _evaluate(model, x_all, y_all, dom_all, train_rows, medians, majority)
    report: dict[str, Any] = {
        "n_rows": int(n_rows),
        "n_used": int(n),
        "n_train": int(len(train_rows)),
        "n_val": int(n_val),
        "n_holdout": int(n_hold),
        "skipped_no_ratings": int(n_rows - n),
        "rows_missing_some_rating": int(partial.sum()),
        "rows_missing_domain": int(no_domain.sum()),
        "holdout": held,
        "train": {
            k: train_metrics[k]
            for k in ("criteria_mae", "criteria_spearman", "overall_mae", "overall_spearman", "domain_accuracy")
        },
        "domain_majority_class": DOMAIN_NAMES[majority],
        "settings": {
            "seed": seed,
            "holdout": holdout,
            "epochs": epochs,
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "batch_size": batch_size,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
            "lr": lr,
            "weight_decay": weight_decay,
            "domain_weight": domain_weight,
            "label_smoothing": label_smoothing,
            "val_fraction": val_fraction,
            "patience": patience,
            "text_features": use_text_features,
            "device": device,
        },
        "embedding_dim": int(emb.shape[1]),
        "embed_model": embed_model,
        "train_seconds": round(time.perf_counter() - t0, 3),
    }
    if extra:
        report.update(dict(extra))
    model.meta["report"] = report
    model.save(out_dir)
    _write_json(Path(out_dir) / REPORT_FILE, report)
    if held is not None:
        logger.info(
            f"student: held-out ({n_hold} rows) criteria MAE {held['criteria_mae']}, Spearman "
            f"{held['criteria_spearman']}, domain accuracy {held['domain_accuracy']}"
        )
    return report


def _scatter(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    out = np.full((n, values.shape[1]), np.nan)
    out[rows] = values
    return out


# --------------------------------------------------------------------------------------------------- rater


@RATERS.register("student", order=30, needs_embeddings=True, gpu=True, section="score.student")
class StudentRater(Rater):
    """Rates documents with a trained ``StudentModel`` from their stored embeddings (and texts).

    Args:
        cfg: a ``StudentSection`` or a mapping validated into one.
        embed_model: the label of the run's embedding model (``winnow.embedding.embed.model_label``); when given,
            a model trained on another embedding model is refused in ``setup``.
    """

    name = "student"

    def __init__(self, cfg: StudentSection | Mapping[str, Any], embed_model: str | None = None):
        self.cfg = cfg if isinstance(cfg, StudentSection) else StudentSection.model_validate(dict(cfg))
        self.embed_model = embed_model
        self.model: StudentModel | None = None

    @classmethod
    def from_config(cls, score: Any, embed: EmbedSection, embedder: Embedder | None = None) -> StudentRater:
        """The rater of ``score.backend: student``: the ``score.student`` section, refusing a model trained on
        another embedding model than ``embed.model``."""
        if score.student is None:
            raise ConfigError(
                "score.backend=student needs a score.student section (model_dir: DIR from train-student)"
            )
        return cls(score.student, embed_model=model_label(embed))

    @classmethod
    def uses_embeddings(cls, score: Any) -> bool:
        """The student rates from the stored embeddings, always."""
        return True

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "embed_model": self.embed_model}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cfg"], state["embed_model"])  # type: ignore[misc]

    def setup(self) -> None:
        if self.model is not None:
            return
        model = StudentModel.load(self.cfg.model_dir, device=self.cfg.device)
        trained_on = model.meta.get("embed_model")
        if self.embed_model is not None and trained_on is not None and trained_on != self.embed_model:
            same_name = Path(str(trained_on)).name == Path(str(self.embed_model)).name
            msg = (
                f"score.student: the model in {self.cfg.model_dir} was trained on embeddings of {trained_on!r}, "
                f"this run embeds with {self.embed_model!r}"
            )
            if not same_name:
                raise ConfigError(msg + ": retrain the student on this run's embeddings")
            logger.warning(msg + " (same directory name: assumed moved)")
        self.model = model

    def teardown(self) -> None:
        self.model = None

    def rate(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> pa.Table:
        """Rate a batch from its embeddings ``[len(texts), d]`` (required) and texts."""
        if embeddings is None:
            raise CurationError("the student rater needs the documents' embeddings (it runs after the embed stage)")
        if len(embeddings) != len(texts):
            raise CurationError(f"{len(embeddings)} embeddings for {len(texts)} texts")
        self.setup()
        assert self.model is not None
        if len(texts) == 0:
            return QUALITY_SCHEMA.empty_table()
        ratings, probs = self.model.predict(embeddings, list(texts), batch_size=self.cfg.batch_size)
        return self.model.quality_table(ratings, probs)
