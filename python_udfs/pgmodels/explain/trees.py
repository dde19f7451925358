"""Tree ensembles as flat node arrays (:class:`.treeshap.Ensemble`), read from the fitted
native model at training time: XGBoost (its JSON model), LightGBM (its model dump),
CatBoost (its JSON export: oblivious trees unfolded into binary ones), and
scikit-learn's decision trees, random forests, extra trees, gradient boosting and
histogram gradient boosting.

Each reader returns the trees with their node covers (XGBoost's hessian sums, the
others' training row counts or weights, as shap's TreeExplainer reads them), thresholds
normalised to "left when x < threshold", and the leaf values in the model's raw output:
the margin (log-odds for binary classifiers, one column per class for multi-class) of
boosted models, the class probabilities of random forests, the value of regressors. The
constant the raw output adds (XGBoost's base score, LightGBM's init score, CatBoost's
bias, gradient boosting's prior) is measured rather than parsed: ``raw(X) - trees(X)``
on the training sample, which must be the same for every row (:func:`finish`).

A model these readers do not know, or whose trees use what they do not (categorical
splits, vector leaves, DART weights), raises :class:`Unsupported`; the model is then
explained by sampling instead.
"""

from __future__ import annotations

import json

import numpy as np

from .treeshap import Ensemble


class Unsupported(Exception):
    """This model cannot be explained exactly (the reason is the message)."""


def _up(threshold) -> np.ndarray:
    """x <= t as x < t': the next double above t."""
    return np.nextafter(np.asarray(threshold, dtype=np.float64), np.inf)


def _assemble(trees: list[dict], K: int, float32: bool) -> Ensemble:
    """Flat arrays from per-tree dicts (left, right, feature, threshold, missing_left,
    cover, value (n, K)), each tree's nodes ordered so children follow their parent."""
    trees = [_ordered(t) for t in trees]
    sizes = [len(t["left"]) for t in trees]
    cat = lambda k, dt: np.concatenate([np.asarray(t[k], dtype=dt) for t in trees])  # noqa: E731
    return Ensemble(offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                    left=cat("left", np.int32), right=cat("right", np.int32), feature=cat("feature", np.int32),
                    threshold=cat("threshold", np.float64), missing_left=cat("missing_left", bool),
                    cover=cat("cover", np.float64),
                    value=np.concatenate([np.asarray(t["value"], dtype=np.float64).reshape(-1, K) for t in trees]),
                    base=np.zeros(K), float32=float32)


def _ordered(t: dict) -> dict:
    """The tree renumbered breadth-first from node 0 (children after parents)."""
    left, right = np.asarray(t["left"]), np.asarray(t["right"])
    order, seen = [0], 0
    while seen < len(order):
        node = order[seen]
        seen += 1
        if left[node] >= 0:
            order += [int(left[node]), int(right[node])]
    if len(order) != len(left) or len(set(order)) != len(order):
        raise Unsupported("a tree whose nodes are not one tree")
    new = np.empty(len(order), dtype=np.int64)
    new[np.asarray(order)] = np.arange(len(order))
    order = np.asarray(order)
    out = {k: np.asarray(v)[order] for k, v in t.items()}
    inner = out["left"] >= 0
    out["left"] = np.where(inner, new[np.maximum(out["left"], 0)], -1)
    out["right"] = np.where(inner, new[np.maximum(out["right"], 0)], -1)
    return out


# -- scikit-learn ----------------------------------------------------------------------

def _sk_tree(tree, scale: float, normalise: bool, K: int, column: int | None = None) -> dict:
    t = tree.tree_
    value = np.asarray(t.value, dtype=np.float64)[:, 0, :]       # (nodes, classes or 1)
    if normalise:                                                 # a classifier's class shares
        total = value.sum(axis=1, keepdims=True)
        value = value / np.where(total > 0, total, 1.0)
    if column is not None:                                        # one class of a boosted model
        full = np.zeros((len(value), K))
        full[:, column] = value[:, 0]
        value = full
    leaf = t.children_left < 0
    value = np.where(leaf[:, None], value * scale, 0.0)
    missing = getattr(t, "missing_go_to_left", None)
    return {"left": t.children_left, "right": t.children_right, "feature": np.where(leaf, -1, t.feature),
            "threshold": np.where(leaf, 0.0, _up(t.threshold)),
            "missing_left": np.asarray(missing, dtype=bool) if missing is not None else np.ones(len(leaf), bool),
            "cover": t.weighted_n_node_samples, "value": value}


def sklearn_forest(model, classifier: bool) -> Ensemble:
    trees = getattr(model, "estimators_", None)
    if trees is None:                       # a single decision tree
        trees = [model]
    K = len(model.classes_) if classifier else 1
    if not classifier and getattr(model, "n_outputs_", 1) != 1:
        raise Unsupported("a multi-output forest")
    return _assemble([_sk_tree(e, 1.0 / len(trees), classifier, K) for e in trees], K, float32=True)


def sklearn_boosting(model, classifier: bool) -> Ensemble:
    stages = model.estimators_                                    # (n_stages, K)
    K = stages.shape[1]
    trees = [_sk_tree(stages[s, k], model.learning_rate, False, K, k if K > 1 else None)
             for s in range(stages.shape[0]) for k in range(K)]
    return _assemble(trees, K, float32=True)


def sklearn_hist(model) -> Ensemble:
    predictors = model._predictors
    K = len(predictors[0])
    trees = []
    for it in predictors:
        for k, p in enumerate(it):
            nodes = p.nodes
            if "is_categorical" in nodes.dtype.names and nodes["is_categorical"].any():
                raise Unsupported("categorical splits")
            leaf = nodes["is_leaf"].astype(bool)
            children = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
            value = np.zeros((len(nodes), K))
            value[:, k] = np.where(leaf, nodes["value"], 0.0)
            trees.append({"left": np.where(leaf, -1, children[0]), "right": np.where(leaf, -1, children[1]),
                          "feature": np.where(leaf, -1, nodes["feature_idx"].astype(np.int64)),
                          "threshold": np.where(leaf, 0.0, _up(nodes["num_threshold"])),
                          "missing_left": nodes["missing_go_to_left"].astype(bool),
                          "cover": nodes["count"].astype(np.float64), "value": value})
    return _assemble(trees, K, float32=False)


# -- XGBoost ------------------------------------------------------------------------------

def xgboost(booster) -> Ensemble:
    doc = json.loads(bytes(booster.save_raw(raw_format="json")))
    gb = doc["learner"]["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise Unsupported(f"XGBoost booster {gb.get('name')!r}")
    model = gb["model"]
    param = doc["learner"]["learner_model_param"]
    K = max(int(param.get("num_class", "0") or 0), 1)
    if int(param.get("num_target", "1") or 1) != 1:
        raise Unsupported("a multi-target XGBoost model")
    info = model["tree_info"]
    trees = []
    for t, cls in zip(model["trees"], info):
        if int(t["tree_param"].get("size_leaf_vector", "1") or 1) > 1 or any(t["split_type"]):
            raise Unsupported("vector leaves or categorical splits")
        left, right = np.asarray(t["left_children"]), np.asarray(t["right_children"])
        leaf = left < 0
        value = np.zeros((len(left), K))
        value[:, cls if K > 1 else 0] = np.where(leaf, t["split_conditions"], 0.0)
        # XGBoost compares single-precision values: x < threshold goes left
        trees.append({"left": left, "right": right, "feature": np.where(leaf, -1, t["split_indices"]),
                      "threshold": np.where(leaf, 0.0, np.asarray(t["split_conditions"], dtype=np.float32)),
                      "missing_left": np.asarray(t["default_left"], dtype=bool),
                      "cover": np.asarray(t["sum_hessian"], dtype=np.float64), "value": value})
    return _assemble(trees, K, float32=True)


# -- LightGBM -----------------------------------------------------------------------------

def lightgbm(booster) -> Ensemble:
    dump = booster.dump_model()
    per_iteration = int(dump.get("num_tree_per_iteration", 1))
    K = per_iteration
    trees = []
    for i, info in enumerate(dump["tree_info"]):
        nodes: list[dict] = []
        _lgb_walk(info["tree_structure"], nodes, K, i % per_iteration)
        trees.append({k: [n[k] for n in nodes] for k in ("left", "right", "feature", "threshold",
                                                         "missing_left", "cover", "value")})
    return _assemble(trees, K, float32=False)


def _lgb_walk(node: dict, out: list, K: int, column: int) -> int:
    me = len(out)
    value = np.zeros(K)
    if "split_index" not in node:
        value[column] = node["leaf_value"]
        out.append({"left": -1, "right": -1, "feature": -1, "threshold": 0.0, "missing_left": True,
                    "cover": float(node.get("leaf_count", 0)), "value": value})
        return me
    if node.get("decision_type") != "<=" or not isinstance(node.get("threshold"), (int, float)):
        raise Unsupported("categorical splits")
    missing = node.get("missing_type", "None")
    if missing == "Zero":
        raise Unsupported("LightGBM splits that treat zero as missing")
    threshold = float(node["threshold"])
    # missing_type None: a NaN is read as 0.0; NaN: it goes the default way
    missing_left = bool(node.get("default_left", True)) if missing == "NaN" else 0.0 <= threshold
    out.append({"left": 0, "right": 0, "feature": int(node["split_feature"]), "threshold": float(_up(threshold)),
                "missing_left": missing_left, "cover": float(node.get("internal_count", 0)), "value": value})
    out[me]["left"] = _lgb_walk(node["left_child"], out, K, column)
    out[me]["right"] = _lgb_walk(node["right_child"], out, K, column)
    return me


# -- CatBoost -----------------------------------------------------------------------------

def catboost(model, low_bit_first: bool = True) -> Ensemble:
    import os
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pgmodels-explain-") as home:
        path = os.path.join(home, "model.json")
        model.save_model(path, format="json")
        with open(path) as f:
            doc = json.load(f)
    if doc.get("features_info", {}).get("categorical_features") or "non_symmetric_trees" in doc:
        raise Unsupported("categorical features or non-symmetric trees")
    flat = {f["feature_index"]: f["flat_feature_index"] for f in doc["features_info"].get("float_features", [])}
    missing_left = {f["feature_index"]: f.get("nan_value_treatment", "AsIs") != "AsMax"
                    for f in doc["features_info"].get("float_features", [])}
    scale, bias = doc.get("scale_and_bias", [1.0, [0.0]])
    K = max(len(bias) if isinstance(bias, list) else 1, 1)
    trees = [_oblivious(t, flat, missing_left, K, scale, low_bit_first) for t in doc["oblivious_trees"]]
    return _assemble(trees, K, float32=True)


def _oblivious(t: dict, flat: dict, missing_left: dict, K: int, scale: float, low_bit_first: bool) -> dict:
    splits = t["splits"]
    if any(s.get("split_type") != "FloatFeature" for s in splits):
        raise Unsupported("CatBoost splits other than on numbers")
    depth = len(splits)
    values = np.asarray(t["leaf_values"], dtype=np.float64).reshape(2 ** depth, K) * scale
    weights = np.asarray(t["leaf_weights"], dtype=np.float64)
    # leaf index bit i is split i's answer (x > border); the unfolded tree asks the
    # splits from the last to the first, so each level decides one bit
    order = list(range(depth - 1, -1, -1)) if low_bit_first else list(range(depth))
    nodes = {"left": [], "right": [], "feature": [], "threshold": [], "missing_left": [], "cover": [], "value": []}

    def add(level: int, leaf_bits: int, mask_len: int) -> int:
        me = len(nodes["left"])
        for k in nodes:
            nodes[k].append(None)
        if level == depth:
            index = leaf_bits
            nodes["left"][me] = nodes["right"][me] = -1
            nodes["feature"][me], nodes["threshold"][me], nodes["missing_left"][me] = -1, 0.0, True
            nodes["cover"][me], nodes["value"][me] = weights[index], values[index]
            return me
        s = splits[order[level]]
        bit = 1 << order[level]
        feature = flat[s["float_feature_index"]]
        nodes["feature"][me] = feature
        nodes["threshold"][me] = float(_up(np.float32(s["border"])))
        nodes["missing_left"][me] = missing_left.get(s["float_feature_index"], True)
        nodes["value"][me] = np.zeros(K)
        nodes["left"][me] = add(level + 1, leaf_bits, mask_len)
        nodes["right"][me] = add(level + 1, leaf_bits | bit, mask_len)
        nodes["cover"][me] = nodes["cover"][nodes["left"][me]] + nodes["cover"][nodes["right"][me]]
        return me

    add(0, 0, depth)
    nodes["value"] = np.asarray(nodes["value"], dtype=np.float64).reshape(-1, K)
    return nodes


# -- which reader, and the raw output to check against -------------------------------------

def read(model, classifier: bool) -> tuple[Ensemble, object]:
    """(the ensemble, a function giving the model's raw output for model-space rows)."""
    module, name = type(model).__module__, type(model).__name__
    if module.startswith("xgboost"):
        booster = model.get_booster()

        def raw(X):
            return booster.inplace_predict(np.asarray(X, dtype=np.float32), predict_type="margin", missing=np.nan)
        return xgboost(booster), raw
    if module.startswith("lightgbm"):
        return lightgbm(model.booster_), lambda X: model.predict(np.asarray(X, dtype=np.float64), raw_score=True)
    if module.startswith("catboost"):
        return catboost(model), lambda X: model.predict(np.asarray(X, dtype=np.float32), prediction_type="RawFormulaVal")
    if not module.startswith("sklearn."):
        raise Unsupported(f"{name} is not a tree ensemble pgmodels reads")
    if name in ("RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier",
                "ExtraTreeClassifier"):
        return sklearn_forest(model, True), model.predict_proba
    if name in ("RandomForestRegressor", "ExtraTreesRegressor", "DecisionTreeRegressor", "ExtraTreeRegressor"):
        return sklearn_forest(model, False), model.predict
    if name in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
        return sklearn_boosting(model, classifier), model.decision_function if classifier else model.predict
    if name in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        if classifier:
            return sklearn_hist(model), model.decision_function
        return sklearn_hist(model), lambda X: model._raw_predict(np.asarray(X, dtype=np.float64))
    raise Unsupported(f"{name} is not a tree ensemble pgmodels reads")


def finish(ens: Ensemble, raw, X: np.ndarray, tolerance: float = 1e-4) -> Ensemble:
    """Set the ensemble's base from the model's raw output on rows X, and check that the
    trees then give that output for every row; Unsupported otherwise."""
    want = np.asarray(raw(X), dtype=np.float64).reshape(len(X), -1)
    if want.shape[1] != ens.outputs:
        raise Unsupported(f"the model has {want.shape[1]} raw outputs, its trees {ens.outputs}")
    got = ens.predict_raw(X)
    offset = (want - got).mean(axis=0)
    scale = max(1.0, float(np.abs(want).max()))
    if np.abs(want - got - offset).max() > tolerance * scale:
        raise Unsupported("the trees read from the model do not reproduce its output")
    ens.base = offset
    ens.checked = (X, want)   # the model's own output on those rows, for the builder's last check
    return ens
