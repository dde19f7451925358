"""A NUL character anywhere in a request to `pgmodels serve` is the client's mistake: 400
with the Open Inference Protocol's error body (the console's error page under /console),
INVALID_ARGUMENT over gRPC; never a 500. PostgreSQL's text cannot hold NUL, so before
these checks a NUL in a model name reached the database as a parameter and failed there
("PostgreSQL text fields cannot contain NUL"). The server is the real one (two workers),
the clients real ones (httpx, a raw socket for what httpx will not send, tritonclient),
the token a LOGIN-only role's with predict on the projects."""

from __future__ import annotations

import json
import socket

import httpx
import numpy as np
import pytest

from proxyhelpers import Env, bearer, matrix

ONE = [3.0, 5.0, 1.0, 2.0]


@pytest.fixture(scope="module")
def env(test_db, tmp_path_factory):
    e = Env(test_db, tmp_path_factory.mktemp("serve"))
    yield e
    e.close()


def refused(r: httpx.Response) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and "NUL" in body["error"], body


def raw(env, request: bytes) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request sent as bytes (httpx refuses a NUL in a header)."""
    with socket.create_connection(("127.0.0.1", env.server.port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split()[1]), headers, body


def still_well(env) -> None:
    """The server answers a good request, and nothing was a server error."""
    r = httpx.post(f"{env.server.url}/v2/models/{env.num}/infer", json={"inputs": [matrix([ONE])]},
                   headers=bearer(env.token), timeout=30)
    assert r.status_code == 200, r.text
    log = env.server.log_text()
    assert "unexpected error" not in log and "Traceback" not in log and "status=500" not in log, log[-3000:]


@pytest.mark.parametrize("path", [
    "/v2/models/{num}%00", "/v2/models/%00", "/v2/models/{num}%00/ready", "/v2/models/{num}/versions/1%00",
    "/v2/models/{num}/versions/%001/ready", "/v2/models/{num}%00/bundle", "/v2/models/{num}%00/bundle/manifest",
    "/v2/health/live%00", "/v2%00", "/metrics%00", "/v2/models/{num}?version=%00", "/v2/models/{num}?%00=1",
    "/v2/health/ready?x=a%00b", "/metrics?name%00=1"])
def test_a_nul_in_a_get_path_or_query_is_400(env, path):
    r = httpx.get(env.server.url + path.format(num=env.num), headers=bearer(env.token), timeout=30)
    refused(r)
    # so is it without a token: nothing runs before the check
    refused(httpx.get(env.server.url + path.format(num=env.num), timeout=30))


@pytest.mark.parametrize("path", ["/v2/models/{num}%00/infer", "/v2/models/%00/infer",
                                  "/v2/models/{num}/versions/1%00/infer", "/v2/models/{num}/infer?id=%00"])
def test_a_nul_in_an_infer_path_is_400(env, path):
    r = httpx.post(env.server.url + path.format(num=env.num), json={"inputs": [matrix([ONE])]},
                   headers=bearer(env.token), timeout=30)
    refused(r)


@pytest.mark.parametrize("header", [b"Authorization: Bearer a\x00b", b"Authorization: Bearer\x00",
                                    b"Content-Type: application/json\x00", b"Inference-Header-Content-Length: 1\x00",
                                    b"If-None-Match: \"\x00\"", b"X-Anything: \x00"])
def test_a_nul_in_a_header_is_400(env, header):
    body = json.dumps({"inputs": [matrix([ONE])]}).encode()
    request = (f"POST /v2/models/{env.num}/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n").encode()
    if header.lower().startswith(b"authorization"):
        request = request.replace(f"Authorization: Bearer {env.token}\r\n".encode(), b"")
    status, headers, answer = raw(env, request + header + b"\r\n\r\n" + body)
    assert status == 400, (status, answer)
    assert headers["content-type"].startswith("application/json") and "NUL" in json.loads(answer)["error"]


def test_a_nul_in_the_console_cookie_is_400(env):
    # a quoted cookie value may spell NUL as an octal escape: the console would read it
    r = httpx.get(f"{env.server.url}/console/", headers={"cookie": 'pgmodels_console="\\000x"'}, timeout=30)
    assert r.status_code == 400 and "NUL" in r.text and "<title>Error" in r.text


JSON_NULS = [
    {"id": "a\u0000", "inputs": [matrix([ONE])]},
    {"inputs": [matrix([ONE], name="in\u0000put")]},
    {"inputs": [matrix([ONE], datatype="FP32\u0000")]},
    {"inputs": [{**matrix([ONE]), "parameters": {"binary_data_size\u0000": 1}}]},
    {"inputs": [matrix([ONE])], "parameters": {"routing\u0000": "x"}},
    {"inputs": [matrix([ONE])], "parameters": {"routing": "x\u0000"}},
    {"parameters": {"keys": ["1\u0000"]}},
    {"parameters": {"keys": [1, {"\u0000": 1}]}},
    {"inputs": [matrix([ONE])], "outputs": [{"name": "predict\u0000"}]},
    {"inputs": [{"name": "key", "datatype": "BYTES", "shape": [1], "data": ["5\u0000"]}]},
]


@pytest.mark.parametrize("doc", JSON_NULS)
def test_a_nul_in_a_json_string_is_400(env, doc):
    r = httpx.post(f"{env.server.url}/v2/models/{env.num}/infer", json=doc, headers=bearer(env.token), timeout=30)
    refused(r)


def test_a_nul_in_utf16_json_is_400(env):
    body = json.dumps({"id": "a\u0000", "inputs": [matrix([ONE])]}, ensure_ascii=False).encode("utf-16")
    r = httpx.post(f"{env.server.url}/v2/models/{env.num}/infer", content=body, headers=bearer(env.token),
                   timeout=30)
    refused(r)


def test_an_escaped_backslash_u0000_is_text_not_nul(env):
    # "\\u0000" in JSON is the six characters \u0000, which PostgreSQL's text holds
    body = b'{"id": "a\\\\u0000", "inputs": [' + json.dumps(matrix([ONE])).encode() + b"]}"
    r = httpx.post(f"{env.server.url}/v2/models/{env.num}/infer", content=body, headers=bearer(env.token),
                   timeout=30)
    assert r.status_code == 200 and r.json()["id"] == "a\\u0000", r.text


def text_inputs(contract: str) -> list[dict]:
    inputs = [{"name": n, "datatype": "FP32", "shape": [1], "data": [1]} for n in ("tenure", "monthly", "calls")]
    return inputs + [{"name": "paperless", "datatype": "BOOL", "shape": [1], "data": [True]},
                     {"name": "contract", "datatype": "BYTES", "shape": [1], "data": [contract]}]


def test_a_nul_in_a_bytes_tensor_is_400_as_json_and_as_binary(env):
    url = f"{env.server.url}/v2/models/{env.mix}/infer"
    assert httpx.post(url, json={"inputs": text_inputs("month")}, headers=bearer(env.token),
                      timeout=30).status_code == 200
    refused(httpx.post(url, json={"inputs": text_inputs("mo\u0000nth")}, headers=bearer(env.token), timeout=30))
    # Triton's binary extension: the BYTES element length-prefixed after the JSON header
    element = b"mo\x00nth"
    binary = len(element).to_bytes(4, "little") + element
    inputs = text_inputs("x")
    inputs[-1] = {"name": "contract", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(binary)}}
    head = json.dumps({"inputs": inputs}).encode()
    r = httpx.post(url, content=head + binary, timeout=30,
                   headers={**bearer(env.token), "inference-header-content-length": str(len(head))})
    refused(r)
    still_well(env)


def test_the_console_refuses_a_nul_in_a_project_or_version(env):
    for path in (f"/console/projects/{env.num}%00", f"/console/projects/%00/versions/1",
                 f"/console/projects/{env.num}/versions/1%00", "/console/?p=%00"):
        r = httpx.get(env.server.url + path, headers=bearer(env.token), timeout=30)
        assert r.status_code == 400 and "NUL" in r.text and "<title>Error" in r.text, (path, r.status_code)
    # the login form's token is a body: it reaches the database's check as a parameter
    r = httpx.post(f"{env.server.url}/console/login", data={"token": "pgm_1_\x00"}, timeout=30)
    assert r.status_code == 400 and "NUL" in r.text and "set-cookie" not in r.headers
    still_well(env)


def test_grpc_refuses_a_nul_with_invalid_argument(env):
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    client = tg.InferenceServerClient(env.server.grpc_url)
    auth = bearer(env.token)

    def invalid(call) -> None:
        with pytest.raises(InferenceServerException) as info:
            call()
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "NUL" in info.value.message(), info.value

    def one(name: str = "input", datatype: str = "FP32"):
        t = tg.InferInput(name, [1, 4], datatype)
        t.set_data_from_numpy(np.array([ONE], dtype=np.float32))
        return t

    assert client.infer(env.num, [one()], headers=auth).as_numpy("predict").shape == (1,)
    invalid(lambda: client.get_model_metadata(env.num + "\x00", headers=auth))
    invalid(lambda: client.get_model_metadata(env.num, model_version="1\x00", headers=auth))
    invalid(lambda: client.is_model_ready(env.num + "\x00", headers=auth))
    invalid(lambda: client.infer(env.num + "\x00", [one()], headers=auth))
    invalid(lambda: client.infer(env.num, [one("in\x00put")], headers=auth))
    invalid(lambda: client.infer(env.num, [one()], headers=auth, request_id="r\x00"))
    invalid(lambda: client.infer(env.num, [one()], headers=auth, outputs=[tg.InferRequestedOutput("predict\x00")]))
    invalid(lambda: client.infer(env.num, [one()], headers=auth, parameters={"routing": "a\x00b"}))
    invalid(lambda: client.infer(env.num, [one()], headers=auth, parameters={"rou\x00ting": "ab"}))
    # no token, and a NUL: refused before the token is looked at
    invalid(lambda: client.infer(env.num + "\x00", [one()]))
    # a BYTES element with a NUL (raw contents, length-prefixed)
    feeds = [("tenure", "FP32", np.float32, 3), ("monthly", "FP32", np.float32, 95), ("calls", "INT32", np.int32, 1),
             ("paperless", "BOOL", np.bool_, False), ("contract", "BYTES", np.object_, b"mo\x00nth")]
    inputs = []
    for name, datatype, dtype, value in feeds:
        t = tg.InferInput(name, [1], datatype)
        t.set_data_from_numpy(np.array([value], dtype=dtype))
        inputs.append(t)
    invalid(lambda: client.infer(env.mix, inputs, headers=auth))
    # the server is well, and said nothing of a server error
    assert client.infer(env.num, [one()], headers=auth).as_numpy("predict").shape == (1,)
    still_well(env)
