"""Drift of current data against a reference profile, per feature.

- PSI (population stability index) over the profile's quantile bins (numeric) or
  categories (text), with a small floor on empty bins so that it stays finite;
- for numeric features, the Kolmogorov-Smirnov statistic and p-value of the current
  values against the reference's quantile function (one-sample test against the
  reference CDF, interpolated from its 101 quantiles);
- the change in null rate.

Status: 'drift' when PSI >= the drift threshold (0.2 by default) or the KS p-value is
below alpha (0.01) with a statistic of at least 0.1; 'warning' when PSI >= 0.1; else
'ok'. The thresholds are per project (see thresholds()).
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


def _reference_cdf(quantiles):
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0, 1, len(q))

    def cdf(x):
        return np.interp(x, q, levels, left=0.0, right=1.0)
    return cdf


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
    if len(present) and profile["edges"]:
        counts = np.bincount(np.searchsorted(np.asarray(profile["edges"]), present, side="right"),
                             minlength=len(profile["shares"]))
        out["shares"] = (counts / len(present)).tolist()
        out["psi"] = psi(profile["shares"], out["shares"])
        from scipy import stats

        result = stats.ks_1samp(present, _reference_cdf(profile["quantiles"]))
        out["ks_statistic"], out["p_value"] = float(result.statistic), float(result.pvalue)
    out["status"] = status(out, limits)
    return out


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
            (pv is not None and pv < limits["ks_alpha"] and ks >= limits["ks_min_statistic"]):
        return "drift"
    if p is not None and p >= limits["psi_warning"]:
        return "warning"
    return "ok"
