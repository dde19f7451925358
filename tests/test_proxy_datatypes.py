"""`pgmodels serve` advertises each feature's own datatype (its column's SQL type, as
training recorded it) and refuses a value its feature cannot hold: a fraction for an
integer feature, anything but true, false, 0 or 1 for a boolean one (400, naming the
input; INVALID_ARGUMENT over gRPC)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from proxyhelpers import Env, bearer


@pytest.fixture(scope="module")
def env(test_db, tmp_path_factory):
    e = Env(test_db, tmp_path_factory.mktemp("serve"))
    yield e
    e.close()


def features(calls, paperless, calls_type="FP32", paperless_type="FP32") -> list[dict]:
    return [{"name": "tenure", "datatype": "FP32", "shape": [1], "data": [3.0]},
            {"name": "monthly", "datatype": "FP32", "shape": [1], "data": [95.0]},
            {"name": "calls", "datatype": calls_type, "shape": [1], "data": [calls]},
            {"name": "paperless", "datatype": paperless_type, "shape": [1], "data": [paperless]},
            {"name": "contract", "datatype": "BYTES", "shape": [1], "data": ["month"]}]


def infer(env, inputs) -> httpx.Response:
    return httpx.post(f"{env.server.url}/v2/models/{env.mix}/infer", json={"inputs": inputs},
                      headers=bearer(env.token), timeout=30)


def test_metadata_advertises_each_features_own_datatype(env):
    import tritonclient.http as th

    meta = httpx.get(f"{env.server.url}/v2/models/{env.mix}", headers=bearer(env.token), timeout=30).json()
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        "tenure": "FP32", "monthly": "FP32", "calls": "INT32", "paperless": "BOOL", "contract": "BYTES"}
    client = th.InferenceServerClient(env.server.url.removeprefix("http://"))
    assert {i["name"]: i["datatype"] for i in client.get_model_metadata(env.mix, headers=bearer(env.token))["inputs"]
            }["calls"] == "INT32"


def test_values_a_feature_can_hold_are_scored(env):
    for calls, paperless, types in ((1, True, ("INT32", "BOOL")), (1.0, 0, ("FP32", "FP32")),
                                    (2, 1, ("INT64", "INT32"))):
        r = infer(env, features(calls, paperless, *types))
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("calls, paperless, wrong", [(1.5, 0, "calls"), (1, 0.5, "paperless"), (1, 2, "paperless"),
                                                      (-0.25, 1, "calls")])
def test_a_value_its_feature_cannot_hold_is_a_400_naming_the_input(env, calls, paperless, wrong):
    r = infer(env, features(calls, paperless))
    assert r.status_code == 400
    assert f'input "{wrong}"' in r.json()["error"]


def test_grpc_refuses_a_fraction_for_an_integer_feature(env):
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    client = tg.InferenceServerClient(env.server.grpc_url)
    inputs = []
    for name, value, datatype in (("tenure", 3.0, "FP32"), ("monthly", 95.0, "FP32"), ("calls", 1.5, "FP32"),
                                  ("paperless", 0.0, "FP32")):
        t = tg.InferInput(name, [1], datatype)
        t.set_data_from_numpy(np.array([value], dtype=np.float32))
        inputs.append(t)
    t = tg.InferInput("contract", [1], "BYTES")
    t.set_data_from_numpy(np.array([b"month"], dtype=object))
    inputs.append(t)
    with pytest.raises(InferenceServerException) as e:
        client.infer(env.mix, inputs, headers=bearer(env.token))
    assert "INVALID_ARGUMENT" in str(e.value.status()) and 'input "calls"' in e.value.message()
