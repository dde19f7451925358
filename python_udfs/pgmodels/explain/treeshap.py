"""Exact path-dependent TreeSHAP over a tree ensemble, vectorized with numpy.

This is Lundberg et al.'s Algorithm 2 ("Consistent Individualized Feature Attribution
for Tree Ensembles", 2018) rearranged per leaf so that numpy can run it over many rows
and leaves at once. For one leaf, with value v, let P be the distinct features split on
along its path from the root (a feature split on twice is merged, as EXTEND/UNWIND
merge it). For each j in P:

- z_j, the "zero fraction": the product of cover(child) / cover(parent) over the path's
  splits on j (the share of training rows that went the path's way);
- o_j, the "one fraction": 1 if the row satisfies every split on j along the path, else 0.

The leaf adds to feature i in P

    phi_i += v * (o_i - z_i) * sum_k w(k, d) * [t^k] prod_{j in P, j != i} (z_j + o_j t)

with d = |P| and w(k, d) = k! (d - 1 - k)! / d!, which is what EXTEND builds and UNWIND
takes apart. The expected value (the base) is the cover-weighted mean of the leaves.

Since the o_j are 0 or 1, a leaf's contributions depend only on which of its d features
the row satisfies: for d <= TABLE_DEPTH they are tabulated at load time for all 2**d
patterns, and a row costs a lookup per leaf; deeper paths are computed per row from the
polynomial (d**2 steps over rows x leaves arrays). Either way each leaf's d numbers are
summed onto features with one sparse product, straight onto the user's input columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TABLE_DEPTH = 8              # tabulate a leaf's contributions when its path has <= 8 features
TABLE_BUDGET = 4_000_000     # ... while all tables take at most this many numbers
TABLE_WORK = 12_000_000      # ... and this many steps to make
DENSE_LOOKUP = 8_000_000     # numbers in a lookup kept dense (else sparse)
CHUNK = 2_000_000            # rows x leaves x depth elements per step of the per-row polynomial
TABLE_CHUNK = 1_000_000      # rows x entries per step of the lookups


@dataclass
class Ensemble:
    """Trees as flat node arrays (every tree's nodes, one after another).

    A split sends a row left when x < threshold (a "<=" split is stored with the next
    float up), and a missing value (NaN) the way missing_left says. value holds each
    leaf's K outputs (zero for inner nodes); base is added once; the model's raw output
    is base + the sum over trees of the leaf each row reaches."""
    offsets: np.ndarray       # int64 (T + 1): where each tree's nodes start
    left: np.ndarray          # int32 (N): child index within the tree, -1 for a leaf
    right: np.ndarray         # int32 (N)
    feature: np.ndarray       # int32 (N): model-space column, -1 for a leaf
    threshold: np.ndarray     # float64 (N)
    missing_left: np.ndarray  # bool (N)
    cover: np.ndarray         # float64 (N): training rows (or hessian) through the node
    value: np.ndarray         # float64 (N, K)
    base: np.ndarray          # float64 (K)
    float32: bool = True      # the library compares single-precision inputs

    def arrays(self) -> dict:
        return {"offsets": self.offsets, "left": self.left, "right": self.right, "feature": self.feature,
                "threshold": self.threshold, "missing_left": self.missing_left, "cover": self.cover,
                "value": self.value, "base": self.base, "float32": np.array(self.float32)}

    @classmethod
    def from_arrays(cls, a: dict) -> "Ensemble":
        return cls(offsets=a["offsets"].astype(np.int64), left=a["left"].astype(np.int32),
                   right=a["right"].astype(np.int32), feature=a["feature"].astype(np.int32),
                   threshold=a["threshold"].astype(np.float64), missing_left=a["missing_left"].astype(bool),
                   cover=a["cover"].astype(np.float64), value=np.atleast_2d(a["value"].astype(np.float64)),
                   base=a["base"].astype(np.float64).reshape(-1), float32=bool(a["float32"]))

    @property
    def outputs(self) -> int:
        return self.value.shape[1]

    def check(self) -> None:
        """Refuse arrays that do not form trees (a damaged record)."""
        n = len(self.left)
        if not (len(self.right) == len(self.feature) == len(self.threshold) == len(self.missing_left)
                == len(self.cover) == self.value.shape[0] == n) or self.offsets[0] != 0 \
                or self.offsets[-1] != n or np.any(np.diff(self.offsets) <= 0) or len(self.base) != self.outputs:
            raise ValueError("tree arrays of different lengths")
        sizes = np.repeat(np.diff(self.offsets), np.diff(self.offsets))
        inner = self.left >= 0
        if np.any((self.right >= 0) != inner) or np.any(self.left[inner] >= sizes[inner]) \
                or np.any(self.right[inner] >= sizes[inner]) or np.any(self.feature[inner] < 0):
            raise ValueError("tree children out of range")
        local = np.arange(n) - np.repeat(self.offsets[:-1], np.diff(self.offsets))
        if np.any(self.left[inner] <= local[inner]) or np.any(self.right[inner] <= local[inner]):
            raise ValueError("tree children must follow their parent")

    def prepare(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return X.astype(np.float32).astype(np.float64) if self.float32 else X

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's raw output for each row (rows x K): what SHAP values add up to.
        Every tree at once, one level per step."""
        X = self.prepare(X)
        n, T = X.shape[0], len(self.offsets) - 1
        node = np.repeat(self.offsets[:-1][None, :], n, axis=0)       # (rows, trees) global node ids
        base = node.copy()
        rows = np.arange(n)[:, None]
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                break
            x = X[rows, np.maximum(self.feature[node], 0)]
            go_left = np.where(np.isnan(x), self.missing_left[node], x < self.threshold[node])
            node = np.where(inner, base + np.where(go_left, self.left[node], self.right[node]), node)
        return self.base + self.value[node].sum(axis=1)

    def expected_value(self) -> np.ndarray:
        """The base of path-dependent TreeSHAP: the cover-weighted mean of every tree's leaves."""
        leaves = self.left < 0
        roots = np.repeat(self.offsets[:-1], np.diff(self.offsets))
        weight = np.where(leaves, self.cover / np.where(self.cover[roots] > 0, self.cover[roots], 1.0), 0.0)
        return self.base + (self.value * weight[:, None]).sum(axis=0)


@dataclass
class PathGroup:
    """The leaves whose paths split on the same number d of distinct features."""
    d: int
    feature: np.ndarray   # int32 (P, d) model-space columns
    low: np.ndarray       # float64 (P, d): the row satisfies feature j's splits when low <= x < high
    high: np.ndarray
    missing: np.ndarray   # bool (P, d): ... or when x is NaN and every split on j sends NaN the path's way
    zero: np.ndarray      # float64 (P, d): z_j
    value: np.ndarray     # float64 (P, K)
    start: int = 0                    # tabulated: where its block of the lookup starts
    spread: object = None             # computed: sparse (n_inputs * K, P * d), leaf values onto input columns


@dataclass
class Paths:
    """An ensemble's leaves, ready to explain rows: the tabulated groups share one lookup
    (row p * 2**d + pattern of a group's block: the leaf's contributions to each input
    column and output), the others are computed per row."""
    n_inputs: int
    outputs: int
    tabled: list = field(default_factory=list)
    computed: list = field(default_factory=list)
    lookup: object = None
    width: int = 0                    # leaves in tabulated groups
    float32: bool = True              # rows are compared in single precision
    flat_feature: np.ndarray | None = None   # the tabulated leaves' features, side by side
    flat_low: np.ndarray | None = None
    flat_high: np.ndarray | None = None
    flat_missing: np.ndarray | None = None
    flat_weight: np.ndarray | None = None    # 2**j for feature j of its leaf
    leaf_start: np.ndarray | None = None     # where each leaf's features start
    leaf_base: np.ndarray | None = None      # each leaf's first row in the lookup
    bases: list = field(default_factory=list)   # each tabulated leaf's first row in the lookup
    # the same, one row of width max d per leaf (padding never satisfied), for a row at a
    # time: its patterns are one gather, two comparisons and a matrix-vector product
    pad_feature: np.ndarray | None = None    # (leaves, W) intp
    pad_low: np.ndarray | None = None
    pad_high: np.ndarray | None = None       # padding: low = high = +inf
    pad_missing: np.ndarray | None = None    # padding: False
    pad_weight: np.ndarray | None = None     # (W,) float32, 2**j


def leaf_paths(ens: Ensemble) -> tuple[np.ndarray, np.ndarray]:
    """For every leaf, its ancestors' splits: (leaf node indices, a (leaves x depth) array
    of (global node, went left) pairs packed as node * 2 + left, -1 padded)."""
    n = len(ens.left)
    base = np.repeat(ens.offsets[:-1], np.diff(ens.offsets))
    parent = np.full(n, -1, dtype=np.int64)
    inner = np.flatnonzero(ens.left >= 0)
    parent[base[inner] + ens.left[inner]] = inner * 2 + 1
    parent[base[inner] + ens.right[inner]] = inner * 2
    leaves = np.flatnonzero(ens.left < 0)
    steps, current = [], leaves.copy()
    while True:
        up = parent[current]
        if (up < 0).all():
            break
        steps.append(up)
        current = np.where(up >= 0, up // 2, current)
    ancestors = np.stack(steps, axis=1) if steps else np.zeros((len(leaves), 0), dtype=np.int64)
    # a finished path repeats -1 from where its root was reached
    return leaves, ancestors


def build_paths(ens: Ensemble, owner: np.ndarray, n_inputs: int) -> "Paths":
    """The ensemble's leaves grouped by their number of distinct split features, with
    their tables, and the matrices that spread contributions onto input columns
    (owner[c] is the input column model column c belongs to)."""
    from scipy import sparse

    leaves, anc = leaf_paths(ens)
    P, D = anc.shape
    valid = anc >= 0
    node = np.where(valid, anc // 2, 0)
    went_left = (anc % 2 == 1) & valid
    feat = np.where(valid, ens.feature[node], np.iinfo(np.int32).max)
    base = np.repeat(ens.offsets[:-1], np.diff(ens.offsets))
    child = np.where(went_left, base[node] + ens.left[node], base[node] + ens.right[node])
    parent_cover = ens.cover[node]
    ratio = np.where(valid, np.where(parent_cover > 0, ens.cover[child] / np.where(parent_cover > 0, parent_cover, 1), 0.0), 1.0)
    thr = ens.threshold[node]
    low = np.where(valid & ~went_left, thr, -np.inf)
    high = np.where(went_left, thr, np.inf)
    miss = np.where(valid, ens.missing_left[node] == went_left, True)

    # merge the splits on one feature: sort each path by feature, reduce each run
    order = np.argsort(feat, axis=1, kind="stable")
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    feat, ratio, low, high, miss, valid = map(take, (feat, ratio, low, high, miss, valid))
    first = np.ones_like(valid)
    if D:
        first[:, 1:] = feat[:, 1:] != feat[:, :-1]
    first &= valid
    slot = np.cumsum(first, axis=1) - 1                 # the run each split belongs to
    d = first.sum(axis=1)
    width = int(d.max()) if P else 0
    flat = (np.arange(P)[:, None] * max(width, 1) + np.maximum(slot, 0))[valid]
    size = P * max(width, 1)
    z = np.ones(size)
    np.multiply.at(z, flat, ratio[valid])
    lo = np.full(size, -np.inf)
    np.maximum.at(lo, flat, low[valid])
    hi = np.full(size, np.inf)
    np.minimum.at(hi, flat, high[valid])
    ms = np.ones(size, dtype=bool)
    np.logical_and.at(ms, flat, miss[valid])
    fm = np.zeros(size, dtype=np.int64)
    fm[flat] = feat[valid]
    shape = (P, max(width, 1))
    z, lo, hi, ms, fm = (a.reshape(shape) for a in (z, lo, hi, ms, fm))

    K = ens.outputs
    paths = Paths(n_inputs=n_inputs, outputs=K, float32=ens.float32)
    lookup, budget = [], (TABLE_BUDGET, TABLE_WORK)
    for k in range(1, width + 1):
        rows = np.flatnonzero(d == k)
        if len(rows) == 0:
            continue
        g = PathGroup(d=k, feature=fm[rows, :k].astype(np.int32), low=lo[rows, :k], high=hi[rows, :k],
                      missing=ms[rows, :k], zero=z[rows, :k], value=ens.value[leaves[rows]])
        size = len(rows) * (2 ** k) * k
        if k <= TABLE_DEPTH and budget[0] >= size * K and budget[1] >= size * k:
            budget = (budget[0] - size * K, budget[1] - size * k)
            # row p * 2**k + pattern of this group's block: each feature's share, times the
            # leaf's values, on the input columns
            table = _tables(g)                                           # (P * 2**k, k)
            cols = (owner[g.feature][:, None, :, None] * K + np.arange(K)[None, None, None, :])
            cols = np.broadcast_to(cols, (len(rows), 2 ** k, k, K)).reshape(-1)
            vals = (table.reshape(len(rows), 2 ** k, k, 1) * g.value[:, None, None, :]).reshape(-1)
            rws = np.broadcast_to(np.arange(len(rows) * 2 ** k).reshape(len(rows), 2 ** k, 1, 1),
                                  (len(rows), 2 ** k, k, K)).reshape(-1)
            g.start = sum(len(h.feature) * 2 ** h.d for h in paths.tabled)
            lookup.append(sparse.coo_matrix((vals, (rws + g.start, cols)),
                                            shape=(g.start + len(rows) * 2 ** k, n_inputs * K)))
            paths.tabled.append(g)
        else:
            cols = (owner[g.feature.reshape(-1)][:, None] * K + np.arange(K)[None, :]).reshape(-1)
            vals = np.repeat(g.value, k, axis=0).reshape(-1)
            rws = np.repeat(np.arange(len(rows) * k), K)
            g.spread = sparse.csr_matrix((vals, (rws, cols)), shape=(len(rows) * k, n_inputs * K)).T.tocsr()
            paths.computed.append(g)
    if lookup:
        total = sum(len(h.feature) * 2 ** h.d for h in paths.tabled)
        rws = np.concatenate([m.row for m in lookup])
        cls = np.concatenate([m.col for m in lookup])
        vls = np.concatenate([m.data for m in lookup])
        table = sparse.csr_matrix((vls, (rws, cls)), shape=(total, n_inputs * K))
        paths.lookup = table.toarray() if total * n_inputs * K <= DENSE_LOOKUP else table
        paths.width = sum(len(h.feature) for h in paths.tabled)
        paths.bases = [g.start + (np.arange(len(g.feature), dtype=np.int64) << g.d) for g in paths.tabled]
        # every tabulated leaf's features side by side, so that one pass over a row finds
        # all the leaves' patterns: entry e is feature j of a leaf, with weight 2**j
        paths.flat_feature = np.concatenate([g.feature.reshape(-1) for g in paths.tabled]).astype(np.int64)
        dtype = np.float32 if paths.float32 else np.float64
        paths.flat_low = _threshold(np.concatenate([g.low.reshape(-1) for g in paths.tabled]), dtype)
        paths.flat_high = _threshold(np.concatenate([g.high.reshape(-1) for g in paths.tabled]), dtype)
        paths.flat_missing = np.concatenate([g.missing.reshape(-1) for g in paths.tabled])
        paths.flat_weight = np.concatenate([np.tile(1 << np.arange(g.d), len(g.feature)) for g in paths.tabled]
                                           ).astype(np.uint8)
        sizes = np.concatenate([np.full(len(g.feature), g.d) for g in paths.tabled])
        paths.leaf_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        paths.leaf_base = np.concatenate(paths.bases)
        width = int(sizes.max())
        used = np.arange(width)[None, :] < sizes[:, None]
        paths.pad_feature = np.zeros(used.shape, dtype=np.intp)
        paths.pad_feature[used] = paths.flat_feature
        paths.pad_low = np.full(used.shape, np.inf, dtype=paths.flat_low.dtype)
        paths.pad_low[used] = paths.flat_low
        paths.pad_high = np.full(used.shape, np.inf, dtype=paths.flat_high.dtype)
        paths.pad_high[used] = paths.flat_high
        paths.pad_missing = np.zeros(used.shape, dtype=bool)
        paths.pad_missing[used] = paths.flat_missing
        paths.pad_weight = (1 << np.arange(width)).astype(np.float32)
    return paths


def _one_row(paths: "Paths", x: np.ndarray) -> np.ndarray:
    """The tabulated leaves' contributions to one row x (compared dtype): each leaf's
    pattern (a dot of its satisfied features with 2**j, exact in float32 for d <= 8),
    then its lookup rows gathered and added up."""
    v = np.take(x, paths.pad_feature)
    o = (v >= paths.pad_low) & (v < paths.pad_high)
    if np.isnan(x).any():
        o |= np.isnan(v) & paths.pad_missing
    rows = (o.astype(np.float32) @ paths.pad_weight).astype(np.int64) + paths.leaf_base
    return np.ones(len(rows)) @ np.take(paths.lookup, rows, axis=0)


def _weights(d: int) -> np.ndarray:
    return np.array([math.factorial(k) * math.factorial(d - 1 - k) / math.factorial(d) for k in range(d)])


def _contributions(o: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The v-free contribution of each of a leaf's d features: o (..., P, d) in {0, 1},
    z (P, d) broadcast against it; returns (..., P, d)."""
    d = z.shape[-1]
    o = o.astype(np.float64)
    shape = np.broadcast_shapes(o.shape, z.shape)
    # C: coefficients of prod_j (z_j + o_j t), lowest degree first
    C = np.zeros(shape[:-1] + (d + 1,))
    C[..., 0] = 1.0
    for j in range(d):
        zj, oj = z[..., j:j + 1], o[..., j:j + 1]
        C[..., 1:j + 2] = C[..., 1:j + 2] * zj + C[..., 0:j + 1] * oj
        C[..., 0:1] = C[..., 0:1] * zj
    w = _weights(d)
    out = np.empty(shape)
    for i in range(d):
        zi, oi = np.broadcast_to(z[..., i], shape[:-1]), np.broadcast_to(o[..., i], shape[:-1])
        # C / (z_i + t) by synthetic division (the row satisfied feature i) ...
        q = np.empty(shape[:-1] + (d,))
        q[..., d - 1] = C[..., d]
        for k in range(d - 1, 0, -1):
            q[..., k - 1] = C[..., k] - zi * q[..., k]
        with_one = q @ w
        # ... or C / z_i (it did not)
        safe = np.where(zi > 0, zi, 1.0)
        with_zero = np.where(zi > 0, (C[..., :d] @ w) / safe, 0.0)
        out[..., i] = (oi - zi) * np.where(oi > 0, with_one, with_zero)
    return out


def _tables(g: PathGroup) -> np.ndarray:
    d = g.d
    patterns = ((np.arange(2 ** d)[:, None] >> np.arange(d)[None, :]) & 1).astype(np.float64)
    t = _contributions(patterns[:, None, :], g.zero[None, :, :])   # (2**d, P, d)
    return np.ascontiguousarray(t.transpose(1, 0, 2)).reshape(-1, d)


def _satisfied(g: PathGroup, X: np.ndarray) -> np.ndarray:
    x = X[:, g.feature]                                              # (n, P, d)
    o = (x >= g.low) & (x < g.high)
    nan = np.isnan(x)
    if nan.any():
        o = np.where(nan, g.missing, o)
    return o


def _threshold(t: np.ndarray, dtype) -> np.ndarray:
    """Thresholds in the dtype rows are compared in: for single precision, the smallest
    float32 at or above each one, so that x < t and x >= t answer as in double precision
    for every float32 x."""
    if dtype == np.float64:
        return t
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    below = t32.astype(np.float64) < t
    t32[below] = np.nextafter(t32[below], np.float32(np.inf))
    return t32


def _patterns(paths: "Paths", XT: np.ndarray, nan: bool) -> np.ndarray:
    """(leaves x rows) each row's lookup row at each tabulated leaf: the leaf's first row
    plus its pattern (bit j set when the row satisfies the path's splits on feature j).
    XT is the rows transposed (inputs x rows), so that each entry's values are one
    contiguous gather and each leaf's sum runs over whole rows of entries."""
    v = XT[paths.flat_feature]                                          # (entries, rows)
    o = (v >= paths.flat_low[:, None]) & (v < paths.flat_high[:, None])
    if nan:
        o |= np.isnan(v) & paths.flat_missing[:, None]
    if XT.shape[1] <= 8:  # a few rows: one reduceat over all the leaves, fewest numpy calls
        bits = o.view(np.uint8) * paths.flat_weight[:, None]
        return np.add.reduceat(bits, paths.leaf_start, axis=0).astype(np.int64) + paths.leaf_base[:, None]
    # many rows: per group of leaves with d features, bit j of all its leaves at once
    out, at = [], 0
    o = o.view(np.uint8)
    for g in paths.tabled:
        P, d = g.feature.shape
        block = o[at:at + P * d].reshape(P, d, -1)
        pattern = block[:, 0, :].copy()
        for j in range(1, d):
            pattern |= block[:, j, :] << j
        out.append(pattern)
        at += P * d
    return np.concatenate(out).astype(np.int64) + paths.leaf_base[:, None]


def shap_values(paths: "Paths", X: np.ndarray) -> np.ndarray:
    """SHAP values (rows x inputs x K) of prepared rows X (model space)."""
    from scipy import sparse

    n, K = X.shape[0], paths.outputs
    phi = np.zeros((n, paths.n_inputs * K))
    if paths.tabled:
        Xc = np.asarray(X, dtype=np.float32 if paths.float32 else np.float64)
        nan = bool(np.isnan(Xc).any())
        few = n <= 8 and not sparse.issparse(paths.lookup)  # one at a time: fewest numpy calls
        for r in range(n if few else 0):
            phi[r] += _one_row(paths, Xc[r])
        step = max(1, TABLE_CHUNK // max(len(paths.flat_feature), 1))
        for s in range(0, 0 if few else n, step):
            cols = _patterns(paths, np.ascontiguousarray(Xc[s:s + step].T), nan).T   # (rows, leaves)
            rows = cols.shape[0]
            if rows <= 8 and not sparse.issparse(paths.lookup):   # a few rows: gather and add
                for r in range(rows):
                    phi[s + r] += np.take(paths.lookup, cols[r], axis=0).sum(axis=0)
                continue
            cols = np.ascontiguousarray(cols).reshape(-1)
            S = sparse.csr_matrix((np.ones(cols.size), cols, np.arange(0, cols.size + 1, paths.width)),
                                  shape=(rows, paths.lookup.shape[0]))
            part = S @ paths.lookup
            phi[s:s + step] += part.toarray() if sparse.issparse(part) else part
    for g in paths.computed:
        P, d = g.feature.shape
        step = max(1, CHUNK // max(P * d, 1))
        for s in range(0, n, step):
            Xs = X[s:s + step]
            G = _contributions(_satisfied(g, Xs), g.zero[None, :, :])
            phi[s:s + step] += (g.spread @ G.reshape(len(Xs), P * d).T).T
    return phi.reshape(n, paths.n_inputs, K)
