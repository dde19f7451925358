"""Reference profiles and drift, without a database."""

from __future__ import annotations

import numpy as np

from pgmodels.monitor import drift, profile


def test_a_shifted_feature_and_only_it_drifts():
    rng = np.random.default_rng(0)
    train = {f"f{i}": ("numeric", rng.normal(0, 1, 20000).tolist()) for i in range(4)}
    train["c"] = ("text", rng.choice(["a", "b", "c"], 20000, p=[0.5, 0.3, 0.2]).tolist())
    ref = profile.of_columns(train)
    now = {f"f{i}": rng.normal(0.8 if i == 2 else 0, 1, 5000) for i in range(4)}
    got = {name: drift.numeric(ref[name], values.tolist())["status"] for name, values in now.items()}
    assert got == {"f0": "ok", "f1": "ok", "f2": "drift", "f3": "ok"}
    same = drift.categorical(ref["c"], rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2]).tolist())
    moved = drift.categorical(ref["c"], rng.choice(["a", "b", "c", "z"], 5000, p=[0.2, 0.2, 0.2, 0.4]).tolist())
    assert (same["status"], moved["status"]) == ("ok", "drift")


def test_nulls_and_psi_are_reported():
    ref = profile.numeric([1.0, 2.0, None, 4.0] * 100)
    assert abs(ref["null_rate"] - 0.25) < 1e-9 and ref["min"] == 1.0 and ref["max"] == 4.0
    out = drift.numeric(ref, [1.0, None, None, None] * 100)
    assert abs(out["null_rate_change"] - 0.5) < 1e-9 and out["psi"] > 0.2
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
