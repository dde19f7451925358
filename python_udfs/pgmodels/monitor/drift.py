"""Drift of current data against a reference profile, per feature.

- PSI (population stability index) over the profile's quantile bins (numeric) or
  categories (text), with a small floor on empty bins so that it stays finite;
- for numeric features, the Kolmogorov-Smirnov statistic and p-value of the current
  values against the reference's quantile function (one-sample test against the
  reference CDF, interpolated from its 101 quantiles);
- the change in null rate.

Status: 'drift' when PSI >= the drift threshold (0.2 by default) or the KS p-value is
below alpha (0.01) with a statistic of at least 0.1; 'warning' when PSI >= 0.1; else
'ok'. The thresholds are per project (set_monitor_thresholds). A discrete feature (at most
20 distinct values at training: a count, a flag) is compared by its values' shares: PSI,
and a chi-square p-value for information (no KS: a step distribution has no continuous
quantile function to test against).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .profile import OTHER

FLOOR = 1e-4
DEFAULTS = {"psi_warning": 0.1, "psi_drift": 0.2, "ks_alpha": 0.01, "ks_min_statistic": 0.1}


def psi(expected, actual) -> float:
    e = np.clip(np.asarray(expected, dtype=np.float64), FLOOR, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), FLOOR, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


EXACT_KS_ROWS = 10_000


def ks(values: np.ndarray, cdf) -> tuple[float, float]:
    """The one-sample Kolmogorov-Smirnov statistic and p-value, as scipy.stats.ks_1samp
    gives them (two-sided) for a continuous reference, with its exact distribution up to
    10,000 rows and the asymptotic (Kolmogorov) one above, where they agree and the exact
    one costs seconds. ``cdf`` is (F, F_left): where the reference has a point mass (many
    rows of one value, a zero-inflated feature), F jumps there, and the statistic compares
    the sample with F's left limit below the jump, so a sample that has the same point mass
    is not called different."""
    from scipy import stats

    right, left = cdf
    x = np.sort(values)
    n = len(x)
    d = float(max((np.arange(1, n + 1) / n - right(x)).max(), (left(x) - np.arange(n) / n).max()))
    p = stats.kstwo.sf(d, n) if n <= EXACT_KS_ROWS else stats.kstwobign.sf(d * math.sqrt(n))
    return d, float(min(max(p, 0.0), 1.0))


def _reference_cdf(quantiles):
    """The reference CDF from its quantile function, and its left limit: a value the
    quantile function repeats (a point mass) gets the highest level it holds, and the
    lowest as the left limit."""
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0, 1, len(q))
    values, first = np.unique(q, return_index=True)
    last = len(q) - 1 - np.unique(q[::-1], return_index=True)[1]
    high, low = levels[last], levels[first]

    def right(x):
        return np.interp(x, values, high, left=0.0, right=1.0)

    def left_limit(x):
        out = right(x)
        at = np.searchsorted(values, x)
        hit = (at < len(values)) & (values[np.minimum(at, len(values) - 1)] == x)
        out[hit] = low[at[hit]]
        return out
    return right, left_limit


def _floats(values) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)


def numeric(profile: dict, values, limits: dict = DEFAULTS) -> dict:
    """values: a list (None for NULL) or a float array (NaN for NULL)."""
    x = _floats(values)
    present = x[~np.isnan(x)]
    out = {"rows": len(x), "null_rate_change": ((len(x) - len(present)) / len(x) if len(x) else 0.0)
           - profile["null_rate"], "psi": None, "ks_statistic": None, "p_value": None}
    if len(present) and profile.get("values") is not None:
        out.update(_discrete(profile, present))
    elif len(present) and profile["edges"]:
        counts = np.bincount(np.searchsorted(np.asarray(profile["edges"]), present, side="right"),
                             minlength=len(profile["shares"]))
        out["shares"] = (counts / len(present)).tolist()
        out["psi"] = psi(profile["shares"], out["shares"])
        out["ks_statistic"], out["p_value"] = ks(present, _reference_cdf(profile["quantiles"]))
    out["status"] = status(out, limits)
    return out


def _discrete(profile: dict, present: np.ndarray) -> dict:
    """A feature with few values: PSI over the reference's values (others pooled) and a
    chi-square test of the current counts against the reference shares (p-value only:
    the status goes by PSI, as a large sample makes any difference significant)."""
    from scipy import stats

    # compared at single precision, as drift() reads the rows (a real[]): a value such as 0.1
    # must meet itself whatever precision the profile was made at
    ref_values = np.asarray(profile["values"], dtype=np.float32).astype(np.float64)
    present = present.astype(np.float32).astype(np.float64)
    index = np.searchsorted(ref_values, present)
    known = (index < len(ref_values)) & (ref_values[np.minimum(index, len(ref_values) - 1)] == present)
    counts = np.bincount(np.where(known, index, len(ref_values)), minlength=len(ref_values) + 1).astype(np.float64)
    expected = np.append(np.asarray(profile["value_shares"], dtype=np.float64), 0.0)
    shares = counts / len(present)
    floor = np.clip(expected, FLOOR, None)
    floor = floor / floor.sum()
    p_value = float(stats.chisquare(counts, floor * counts.sum()).pvalue)
    return {"psi": psi(expected, shares), "p_value": p_value, "shares": shares.tolist(), "discrete": True}


def categorical(profile: dict, values, limits: dict = DEFAULTS) -> dict:
    values = list(values)
    present = [str(v) for v in values if v is not None]
    known = profile["shares"]
    counts = {k: 0 for k in known}
    for v, c in Counter(present).items():
        key = v if v in known else OTHER
        counts[key] = counts.get(key, 0) + c
    total = max(len(present), 1)
    keys = sorted(counts)
    out = {"rows": len(values), "null_rate_change": ((len(values) - len(present)) / len(values) if values else 0.0)
           - profile["null_rate"],
           "psi": psi([known.get(k, 0.0) for k in keys], [counts[k] / total for k in keys]) if present else None,
           "ks_statistic": None, "p_value": None, "shares": {k: counts[k] / total for k in keys}}
    out["status"] = status(out, limits)
    return out


def status(result: dict, limits: dict = DEFAULTS) -> str:
    p = result.get("psi")
    ks, pv = result.get("ks_statistic"), result.get("p_value")
    if (p is not None and p >= limits["psi_drift"]) or \
            (ks is not None and pv is not None and pv < limits["ks_alpha"] and ks >= limits["ks_min_statistic"]):
        return "drift"
    if p is not None and p >= limits["psi_warning"]:
        return "warning"
    return "ok"
