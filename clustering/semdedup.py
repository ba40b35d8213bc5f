"""SemDeDup (Abbas et al. 2023): within each cluster, each member's max similarity to a higher-ranked member.

For the members of one cluster ranked by ``rank`` (``hard``: descending distance to the centroid, the paper's
default; ``easy``: ascending; ``random``: a seeded permutation), member j gets
``M_j = max_{i ranked before j} cos(e_i, e_j)`` and the index of that argmax. j is a semantic duplicate when
``M_j ≥ 1 − ε``; because ``M_j`` is stored, any ε — and a whole ε sweep — is a threshold over one column.
The first-ranked member has no predecessor: its ``M`` is NaN (stored as null), it is never a duplicate.

The cost is O(n² d) per cluster; it is computed in ``block × block`` tiles of the strict lower triangle of the
ranked similarity matrix, so a 100k-member cluster never needs a 100k × 100k matrix.

**Backends, and why they agree to the bit.** ``backend="numpy"`` runs on the CPU with numpy's BLAS;
``backend="torch"`` runs the same algorithm with torch on any device (CPU, CUDA), in a screening precision
``dtype`` of ``float32``, ``bfloat16`` or ``float16``. Two BLAS libraries (or one library at two tile shapes) sum a
dot product in different orders, so their float32 similarities differ in the last bits. The result therefore never
comes from a BLAS product; it comes from the *canonical similarity* of two vectors: their float32 components'
products, exact in float64, summed in one fixed pairwise order (``canonical_sim``), which is the same IEEE
operations on numpy, torch CPU and CUDA, so the same bits. The tiles' fast product only *screens*: for each row, the
entries within ``margin`` of its running screened maximum are the candidates, where ``margin`` is twice a proven
bound on the screening error (``screen_margin``: input rounding of the precision, float32 accumulation, output
rounding, times 2 for safety). The entry that attains the canonical maximum is always among them, and is rescored
canonically. A row with more than ``FLOOD`` candidates in a tile (a tight near-duplicate group) is screened again
in float64 (a bound a hundred million times narrower) before the rescoring, so near-duplicates cost a float64
product, not a rescoring of every pair.

The result, on every backend, device, dtype and block size:
- ``M_j`` is the canonical float64 maximum rounded to float32;
- **ties** (equal canonical float64 similarity, e.g. exact copies of a vector) go to the **earliest-ranked**
  member: the lowest rank position among the maxima (what ``np.argmax`` and a strict ``>`` across tiles give);
- exact copies are found first (bitwise-equal rows) and only each vector's earliest-ranked copy is a candidate,
  which by the tie rule changes nothing but spares the rescoring of every copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np

from winnow.core.device import torch_device

Rank = Literal["hard", "easy", "random"]
Backend = Literal["numpy", "torch", "auto"]
ScreenDType = Literal["float32", "bfloat16", "float16"]

#: unit roundoff of a screening product's inputs (``tf32``: float32 matmuls where torch allows TensorFloat-32)
INPUT_UNIT = {"float32": 0.0, "tf32": 2.0**-11, "bfloat16": 2.0**-9, "float16": 2.0**-11}
#: candidates of one row in one tile beyond which that row's tile is screened again in float64
FLOOD = 64
#: pairs rescored at once (memory: ``PAIR_CHUNK × d`` float64)
PAIR_CHUNK = 8192
_U32, _U64 = 2.0**-24, 2.0**-53


def rank_order(dist: np.ndarray, rank: Rank, seed: int = 0, cluster_id: int = 0, keys: np.ndarray | None = None):
    """Member indices in rank order (rank 0 first). Ties are broken by ``keys`` (default: position), so the order
    is deterministic whatever the order the members arrived in."""
    n = len(dist)
    tiebreak = np.arange(n) if keys is None else keys
    if rank == "hard":
        return np.lexsort((tiebreak, -dist.astype(np.float64)))
    if rank == "easy":
        return np.lexsort((tiebreak, dist.astype(np.float64)))
    if rank == "random":
        base = np.lexsort((tiebreak,))  # canonical order, then a seeded permutation of it
        rng = np.random.default_rng([seed, cluster_id])
        return base[rng.permutation(n)]
    raise ValueError(f"dedup.rank={rank!r}; allowed: hard, easy, random")


# -- the canonical similarity and the screening bound ----------------------------------------------------------


def canonical_sim(x: Any, y: Any) -> Any:
    """Row-wise dot products of ``x`` and ``y`` (``[p, d]`` float32, numpy or torch) as float64 ``[p]``.

    The products of float32 numbers are exact in float64; they are summed by one fixed pairwise tree (fold the
    upper half of the columns onto the lower half until one is left), so every backend and device performs the same
    IEEE additions on the same numbers and returns the same bits. The error is at most ``⌈log2 d⌉`` float64
    roundings: ``|canonical − exact| ≤ ⌈log2 d⌉ · 2⁻⁵³ · Σ|x_k y_k|``.
    """
    if isinstance(x, np.ndarray):
        a = np.multiply(x, y, dtype=np.float64)  # float32 → float64 on the fly: exact products
    else:
        a = x.double().mul_(y)
    w = a.shape[1]
    if w == 0:
        return a.sum(1)  # no components: 0
    while w > 1:
        h = (w + 1) // 2
        a[:, : w - h] += a[:, h:w]  # disjoint halves: component c gets component c + h added
        w = h
    return a[:, 0]


def screen_margin(precision: str, d: int, norm2: float, output_unit: float = 0.0) -> float:
    """How far below a row's screened maximum a candidate may lie: twice the screening error bound, doubled.

    ``|screened − canonical| ≤ E · ‖x‖‖y‖ + A`` with ``E`` the sum of: rounding the inputs to ``precision``
    (``(2u + u²)``, with ``u`` from ``INPUT_UNIT``), accumulating ``d`` products in float32
    (``γ_d = d·2⁻²⁴ / (1 − d·2⁻²⁴)``, any order, with or without FMA), rounding the output (``output_unit``, when
    a product is returned in a 16-bit type) and the canonical sum's own error; ``A`` is float16's subnormal range
    (components below 2⁻¹⁴ are rounded to multiples of 2⁻²⁴: at most ``√d · 2⁻²⁴ · (‖x‖ + ‖y‖) / 2`` in all).
    Candidates within twice the bound of the running maximum always include the canonical maximum; the result
    doubles that. ``norm2`` bounds the squared norms of the vectors (1 for unit vectors).
    """
    u = INPUT_UNIT[precision]
    gamma = d * _U32 / max(1e-300, 1.0 - d * _U32)
    err = (2 * u + u * u) + gamma * (1 + u) ** 2 + output_unit * (1 + 2 * u + gamma) + _canonical_err(d)
    sub = math.sqrt(d) * _U32 * math.sqrt(norm2) if precision == "float16" else 0.0
    return 2.0 * 2.0 * (err * norm2 + sub + 1e-30)


def float64_margin(d: int, norm2: float) -> float:
    """``screen_margin`` for a float64 product (``γ_d`` of float64 plus the canonical sum's error), doubled."""
    gamma = d * _U64 / max(1e-300, 1.0 - d * _U64)
    return 2.0 * 2.0 * ((gamma + _canonical_err(d)) * norm2 + 1e-300)


def _canonical_err(d: int) -> float:
    levels = max(1, math.ceil(math.log2(max(d, 2))))
    return levels * _U64 / (1.0 - levels * _U64)


def first_copies(emb: np.ndarray) -> np.ndarray:
    """``[n]`` bool: the row is the first of the bitwise-equal rows of ``emb`` (every distinct vector has one)."""
    n = emb.shape[0]
    first = np.zeros(n, bool)
    if n == 0:
        return first
    if emb.shape[1] == 0:
        first[0] = True
        return first
    rows = np.ascontiguousarray(emb).view(np.dtype((np.void, emb.dtype.itemsize * emb.shape[1])))[:, 0]
    first[np.unique(rows, return_index=True)[1]] = True  # np.unique returns each value's first index
    return first


# -- array backends: the few operations the blocked search needs, for numpy and for torch --------------------------


class _NumpyOps:
    """numpy on the CPU: float32 screening by numpy's BLAS."""

    precision, output_unit = "float32", 0.0
    where = staticmethod(np.where)
    maximum = staticmethod(np.maximum)

    def prepare(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(float32 vectors, the screening operand)``."""
        e = np.ascontiguousarray(emb, dtype=np.float32)
        return e, e

    def mm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a @ b.T

    def mm64(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a.astype(np.float64) @ b.astype(np.float64).T

    def full(self, n: int, value: float, kind: str) -> np.ndarray:
        return np.full(n, value, dtype={"f32": np.float32, "f64": np.float64, "i64": np.int64}[kind])

    def arange(self, a: int, b: int) -> np.ndarray:
        return np.arange(a, b)

    def asarray(self, x: np.ndarray) -> np.ndarray:
        return x

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return x

    def rowmax(self, s: np.ndarray) -> np.ndarray:
        return s.max(axis=1)

    def rowtop(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each row's maximum and the column of its first occurrence."""
        am = s.argmax(axis=1)
        return s[np.arange(len(s)), am], am

    def nonzero(self, mask: np.ndarray) -> tuple[np.ndarray, ...]:
        return np.nonzero(mask)

    def cat(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts)

    def scatter_max(self, n: int, idx: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = np.full(n, -np.inf)
        np.maximum.at(out, idx, v)
        return out

    def scatter_min(self, n: int, idx: np.ndarray, v: np.ndarray) -> np.ndarray:
        out = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(out, idx, v)
        return out

    def fill(self, s: np.ndarray, invalid: np.ndarray) -> np.ndarray:
        """``s`` with the ``invalid`` entries (a mask that broadcasts to it) set to −inf, in place."""
        np.copyto(s, -np.inf, where=invalid)
        return s

    def norm2(self, e: np.ndarray) -> float:
        """An upper bound of the largest squared norm (float32 sums, rounded up by their error bound)."""
        return float(np.einsum("ij,ij->i", e, e).max()) * (1 + 2 * e.shape[1] * _U32) if len(e) else 0.0

    @contextmanager
    def exact_accumulation(self) -> Iterator[None]:
        yield


class _TorchOps(_NumpyOps):
    """torch on ``device``, screening in ``dtype`` (the rescoring is float64 on every device)."""

    def __init__(self, device: Any, dtype: ScreenDType) -> None:
        import torch  # only the torch backend needs it

        self.torch, self.device = torch, torch.device(device)
        self.dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        self.precision, self.output_unit = dtype, INPUT_UNIT[dtype]
        if dtype == "float32":  # torch may run float32 matmuls with TF32 (high) or bf16 (medium) inputs
            fp32 = torch.get_float32_matmul_precision()
            self.precision = {"highest": "float32", "high": "tf32"}.get(fp32, "bfloat16")
        self.where, self.maximum = torch.where, torch.maximum

    def prepare(self, emb: Any) -> tuple[Any, Any]:
        e = self.torch.as_tensor(emb).to(self.device, self.torch.float32).contiguous()
        return e, (e if self.dtype == self.torch.float32 else e.to(self.dtype))

    def mm(self, a: Any, b: Any) -> Any:
        return (a @ b.T).float()

    def mm64(self, a: Any, b: Any) -> Any:
        return a.double() @ b.double().T

    def full(self, n: int, value: float, kind: str) -> Any:
        t = self.torch
        dtype = {"f32": t.float32, "f64": t.float64, "i64": t.int64}[kind]
        return t.full((n,), value, dtype=dtype, device=self.device)

    def arange(self, a: int, b: int) -> Any:
        return self.torch.arange(a, b, device=self.device)

    def asarray(self, x: np.ndarray) -> Any:
        return self.torch.as_tensor(x, device=self.device)

    def numpy(self, x: Any) -> np.ndarray:
        return x.cpu().numpy()

    def rowmax(self, s: Any) -> Any:
        return s.amax(dim=1)

    def rowtop(self, s: Any) -> tuple[Any, Any]:
        return s.max(dim=1)

    def nonzero(self, mask: Any) -> tuple[Any, ...]:
        return self.torch.nonzero(mask, as_tuple=True)

    def cat(self, parts: list[Any]) -> Any:
        return self.torch.cat(parts)

    def scatter_max(self, n: int, idx: Any, v: Any) -> Any:
        return self.full(n, -math.inf, "f64").scatter_reduce_(0, idx, v, "amax")

    def scatter_min(self, n: int, idx: Any, v: Any) -> Any:
        return self.full(n, np.iinfo(np.int64).max, "i64").scatter_reduce_(0, idx, v, "amin")

    def fill(self, s: Any, invalid: Any) -> Any:
        return s.masked_fill_(invalid, -math.inf)

    def norm2(self, e: Any) -> float:
        return float((e * e).sum(1).max()) * (1 + 2 * e.shape[1] * _U32) if len(e) else 0.0

    @contextmanager
    def exact_accumulation(self) -> Iterator[None]:
        """16-bit products accumulate in float32: cuBLAS may otherwise reduce split-K partials in 16 bits, which the
        screening bound does not cover. The two flags are restored afterwards."""
        if self.dtype == self.torch.float32:
            yield
            return
        m = self.torch.backends.cuda.matmul
        old = m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction
        m.allow_fp16_reduced_precision_reduction = m.allow_bf16_reduced_precision_reduction = False
        try:
            yield
        finally:
            m.allow_fp16_reduced_precision_reduction, m.allow_bf16_reduced_precision_reduction = old


# -- the blocked search ----------------------------------------------------------------------------------------------


class _Search:
    """One blocked search over ``emb`` (rows in rank order). Per row: the running screened maximum (``run``), the
    canonical best so far (``best``, float64) and its index (``arg``).

    Columns are only the first copies (``firsts``, ascending): a later exact copy ties with its first copy, which
    the tie rule prefers, so it is never screened. Tiles pair a block of rows with a block of those columns; only
    the tiles that straddle the diagonal need a mask (columns not strictly before the row).
    """

    def __init__(self, ops: _NumpyOps, emb: Any, first: np.ndarray, block: int) -> None:
        self.ops, self.block = ops, block
        self.e, s = ops.prepare(emb)
        n, d = self.e.shape
        self.firsts = np.flatnonzero(first)
        self.cols = ops.asarray(self.firsts)
        every = len(self.firsts) == n
        self.s_rows, self.s_cols = s, (s if every else s[self.cols])
        self.e_cols = self.e if every else self.e[self.cols]
        norm2 = ops.norm2(self.e)
        if ops.precision == "float16" and norm2 > 1e4:
            raise ValueError(f"float16 screening needs vectors of norm below 100 (largest: {math.sqrt(norm2):.3g})")
        self.margin = screen_margin(ops.precision, d, norm2, ops.output_unit)
        self.margin64 = float64_margin(d, norm2)
        self.run = ops.full(n, -math.inf, "f32")
        self.best = ops.full(n, -math.inf, "f64")
        self.arg = ops.full(n, -1, "i64")

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(max_sim float32 [n], argmax int64 [n])``, NaN and -1 where a row has no predecessor."""
        n = self.e.shape[0]
        with self.ops.exact_accumulation():
            for r0 in range(0, n, self.block):
                r1 = min(n, r0 + self.block)
                m = int(np.searchsorted(self.firsts, r1 - 1))  # the columns before the band's last row
                for f0 in range(0, m, self.block):
                    self.tile(r0, r1, f0, min(m, f0 + self.block))
        arg = np.array(self.ops.numpy(self.arg), dtype=np.int64)
        best = self.ops.numpy(self.best).astype(np.float32)
        best[arg < 0] = np.nan
        return best, arg

    def invalid(self, r0: int, r1: int, f0: int, f1: int) -> Any:
        """The entries of a tile whose column is not strictly before the row; None when there are none."""
        if self.firsts[f1 - 1] < r0:
            return None
        return self.cols[f0:f1][None, :] >= self.ops.arange(r0, r1)[:, None]

    def tile(self, r0: int, r1: int, f0: int, f1: int) -> None:
        """Screen one tile, rescore its candidates, keep each row's best."""
        ops = self.ops
        s = ops.mm(self.s_rows[r0:r1], self.s_cols[f0:f1])
        invalid = self.invalid(r0, r1, f0, f1)
        if invalid is not None:
            s = ops.fill(s, invalid)
        top, am = ops.rowtop(s)
        run = ops.maximum(self.run[r0:r1], top)
        self.run[r0:r1] = run
        thr = ops.where(run > -math.inf, run - self.margin, math.inf)  # no valid column yet: no candidate
        ar = ops.arange(0, r1 - r0)
        s[ar, am] = -math.inf  # s is this tile's own array: now the runner-up of each row is its maximum
        second = ops.rowmax(s)
        one = ops.nonzero((top >= thr) & (second < thr))[0]  # the usual case: the argmax is the only candidate
        rows, cols = [one], [am[one]]
        multi = ops.nonzero(second >= thr)[0]
        if len(multi):
            self.multi(r0, f0, f1, s[multi] >= thr[multi][:, None], multi, am[multi], invalid, rows, cols)
        self.update(r0, r1, ops.cat(rows), self.cols[ops.cat(cols) + f0])

    def multi(self, r0: int, f0: int, f1: int, within: Any, multi: Any, am: Any, invalid: Any, rows, cols) -> None:
        """Append to ``rows``/``cols`` (tile-local) the candidates of the rows ``multi``, which have another entry
        within the margin besides their argmax ``am`` (``within``: those entries): all of them, or for a row with
        more than ``FLOOD``, those of a float64 screening."""
        ops = self.ops
        flood = within.sum(1) + 1 > FLOOD
        keep = ops.nonzero(~flood)[0]
        r, c = ops.nonzero(within[keep])
        rows += [multi[keep], multi[keep][r]]
        cols += [am[keep], c]
        if bool(flood.any()):
            f_rows, f_cols = self.rescreen(r0, f0, f1, multi[flood], invalid)
            rows.append(f_rows)
            cols.append(f_cols)

    def rescreen(self, r0: int, f0: int, f1: int, flood: Any, invalid: Any) -> tuple[Any, Any]:
        """Candidates (tile-local) of the flooded rows from a float64 product of their tile, within ``margin64`` of
        the larger of their tile maximum and their canonical best so far."""
        ops = self.ops
        s = ops.mm64(self.e[r0 + flood], self.e_cols[f0:f1])
        if invalid is not None:
            s = ops.fill(s, invalid[flood])
        top = ops.maximum(ops.rowmax(s), self.best[r0 + flood])
        f, cols = ops.nonzero(s >= (top - self.margin64)[:, None])
        return flood[f], cols

    def update(self, r0: int, r1: int, rows: Any, cols: Any) -> None:
        """Rescore the candidates ``(rows, cols)`` (rows tile-local, cols absolute); a row's tile maximum replaces
        its best when strictly greater, so of equal maxima the earliest column wins, within a tile and across."""
        if len(rows) == 0:
            return
        ops, n, e, k = self.ops, r1 - r0, self.e, PAIR_CHUNK
        v = ops.cat([canonical_sim(e[rows[i : i + k] + r0], e[cols[i : i + k]]) for i in range(0, len(rows), k)])
        top = ops.scatter_max(n, rows, v)
        hit = v == top[rows]
        at = ops.scatter_min(n, rows[hit], cols[hit])
        best, arg = self.best[r0:r1], self.arg[r0:r1]
        better = top > best
        best[better] = top[better]
        arg[better] = at[better]


def _ops(backend: str, device: str, dtype: str, emb: Any) -> _NumpyOps:
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dedup.dtype={dtype!r}; allowed: float32, bfloat16, float16")
    if backend == "numpy":
        if dtype != "float32":
            raise ValueError(f"backend=numpy screens in float32 only, not {dtype}")
        return _NumpyOps()
    if backend != "torch":
        raise ValueError(f"SemDeDup backend={backend!r}; allowed: numpy, torch (resolve auto first)")
    if device == "auto" and not isinstance(emb, np.ndarray) and hasattr(emb, "device"):
        return _TorchOps(emb.device, dtype)  # a tensor: compute where it lives
    return _TorchOps(torch_device(device, "dedup.device"), dtype)


def resolve_backend(backend: Backend = "numpy", device: str = "auto") -> tuple[str, str]:
    """``(backend, device)`` that ``dedup.backend`` / ``dedup.device`` mean on this machine.

    ``numpy`` runs on the CPU; ``torch`` on ``device`` (``auto``: CUDA where torch sees it, else the CPU);
    ``auto`` is torch on CUDA where torch sees a CUDA device (and ``device`` is not ``cpu``), else numpy. The
    backends return the same bits, so ``auto`` never changes a result.

    Raises:
        ConfigError: ``device=cuda`` where torch sees no CUDA device.
    """
    if backend == "numpy":
        return "numpy", "cpu"
    if backend == "torch":
        return "torch", torch_device(device, "dedup.device")
    if backend == "auto":
        if device == "cpu":
            return "numpy", "cpu"
        dev = torch_device(device, "dedup.device")
        return ("torch", dev) if dev.startswith("cuda") else ("numpy", "cpu")
    raise ValueError(f"dedup.backend={backend!r}; allowed: numpy, torch, auto")


def max_sim_to_earlier(
    emb: Any, block: int = 2048, backend: str = "numpy", device: str = "auto", dtype: ScreenDType = "float32"
) -> tuple[np.ndarray, np.ndarray]:
    """For rows in the given (ranked) order: max cosine to any earlier row, and that row's index.

    Args:
        emb: ``[n, d]`` L2-normalised vectors in rank order (numpy; a torch tensor for ``backend="torch"``).
        block: tile size; memory is O(block²).
        backend: ``numpy`` or ``torch`` (``resolve_backend`` turns ``auto`` into one of them).
        device: the torch backend's device: ``auto`` (a tensor's own device; for numpy input CUDA where torch sees
            it, else the CPU), ``cpu``, ``cuda``, ``cuda:1``, ...
        dtype: the torch backend's screening precision (``float32``, ``bfloat16``, ``float16``). The result does
            not depend on it, only the speed: 16-bit screening leaves more candidates to rescore.

    Returns:
        ``(max_sim float32 [n], argmax int64 [n])``; row 0 gets ``(nan, -1)``. The same bits for every backend,
        device, dtype and block size (see the module docstring).
    """
    if block < 1:
        raise ValueError(f"block={block}; must be >= 1")
    ops = _ops(backend, device, dtype, emb)
    host = np.ascontiguousarray(emb if isinstance(emb, np.ndarray) else emb.detach().float().cpu().numpy(), np.float32)
    if not np.isfinite(host).all():
        raise ValueError("SemDeDup needs finite vectors; some are NaN or infinite")
    return _Search(ops, emb, first_copies(host), block).result()


def semdedup_cluster(
    emb: Any,
    dist: np.ndarray,
    rank: Rank = "hard",
    seed: int = 0,
    cluster_id: int = 0,
    keys: np.ndarray | None = None,
    block: int = 2048,
    backend: str = "numpy",
    device: str = "auto",
    dtype: ScreenDType = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """SemDeDup for the members of one cluster, in their given order (``backend``, ``device``, ``dtype``: see
    ``max_sim_to_earlier``; every choice returns the same result).

    Returns:
        ``(dup_max_sim float32 [n], dup_nn int64 [n])`` per member in input order: the max similarity to a
        higher-ranked member (NaN for the top-ranked one) and the input index of that member (-1 if none).
    """
    n = emb.shape[0]
    if n == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    order = rank_order(dist, rank, seed=seed, cluster_id=cluster_id, keys=keys)
    sims, arg = max_sim_to_earlier(emb[order], block=block, backend=backend, device=device, dtype=dtype)
    out_sim = np.empty(n, np.float32)
    out_nn = np.empty(n, np.int64)
    out_sim[order] = sims
    out_nn[order] = np.where(arg >= 0, order[np.maximum(arg, 0)], -1)
    return out_sim, out_nn


def is_duplicate(dup_max_sim: np.ndarray, eps: float) -> np.ndarray:
    """``M_j ≥ 1 − ε`` (NaN, i.e. no predecessor, is never a duplicate)."""
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(dup_max_sim, nan=-np.inf) >= 1.0 - eps


def kept_fraction_by_eps(dup_max_sim: np.ndarray, eps_values: list[float]) -> dict[float, float]:
    """The fraction of documents SemDeDup keeps at each ε, from the stored column alone."""
    n = len(dup_max_sim)
    return {float(e): (float((~is_duplicate(dup_max_sim, e)).sum()) / n if n else 1.0) for e in eps_values}
