"""mnist.client through an ingress behind Kubeflow's auth proxy: a bearer token or the session
cookie gets the request through, neither is ever printed, and a login redirect is reported.

    .venv/bin/python -m pytest mnist/tests/test_client.py -q

The proxy is an in-process HTTP server on 127.0.0.1 that behaves as oauth2-proxy does in front
of the model: without a credential it redirects to the login page, with a wrong one it answers
401, with a right one it answers as the model server would. The model server itself is tested
with the client in test_serve.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mnist import client

TOKEN = "eyJhbGciOi.token-made-up-for-this-test.c2lnbmF0dXJl"
COOKIE_VALUE = "Y29va2llLW1hZGUtdXA|1767225600|c2lnbmVk"
HOST = "mnist-kubeflow-user-example-com.example.com"
PROBABILITIES = [0.01] * 7 + [0.91] + [0.01] * 2  # a seven


class AuthProxy(BaseHTTPRequestHandler):
    """oauth2-proxy in front of the mnist predictor, as far as the client can tell."""

    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(dict(self.headers))
        authorization = self.headers.get("Authorization")
        cookie = self.headers.get("Cookie")
        if authorization is None and cookie is None:
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1/dex/auth?client_id=kubeflow&state=x")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if authorization != f"Bearer {TOKEN}" and cookie != f"oauth2_proxy_kubeflow={COOKIE_VALUE}":
            self.answer(401, b"Unauthorized", "text/plain")
            return
        n = len(body["instances"]) if "instances" in body else body["inputs"][0]["shape"][0]
        if self.path == "/v1/models/mnist:predict":
            answer = {"predictions": [{"digit": 7, "probabilities": PROBABILITIES}] * n}
        else:
            answer = {
                "model_name": "mnist",
                "outputs": [
                    {"name": "digit", "shape": [n], "datatype": "INT64", "data": [7] * n},
                    {
                        "name": "probabilities",
                        "shape": [n, 10],
                        "datatype": "FP32",
                        "data": PROBABILITIES * n,
                    },
                ],
            }
        self.answer(200, json.dumps(answer).encode(), "application/json")

    def answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    AuthProxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), AuthProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def digit(tmp_path: Path) -> str:
    path = tmp_path / "digit.png"
    path.write_bytes(b"\x89PNG not decoded by the proxy")
    return str(path)


@pytest.fixture(autouse=True)
def no_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(client.TOKEN_VARIABLE, raising=False)
    monkeypatch.delenv(client.COOKIE_VARIABLE, raising=False)


def ask(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = client.main(list(argv))
    out, err = capsys.readouterr()
    assert TOKEN not in out + err and COOKIE_VALUE not in out + err  # never printed
    return code, out, err


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_a_bearer_token_gets_through(proxy, digit, capsys, protocol: str) -> None:
    code, out, err = ask(
        capsys, "--image", digit, "--url", proxy, "--protocol", protocol, "--token", TOKEN
    )
    assert code == 0, err
    assert out.startswith(f"{digit}: 7 (probability 0.9100)")
    (headers,) = AuthProxy.seen
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert "Cookie" not in headers


def test_the_token_comes_from_the_environment_too(proxy, digit, capsys, monkeypatch) -> None:
    monkeypatch.setenv(client.TOKEN_VARIABLE, TOKEN + "\n")  # as $(kubectl create token) leaves it
    code, _, err = ask(capsys, "--image", digit, "--url", proxy, "--host-header", HOST)
    assert code == 0, err
    (headers,) = AuthProxy.seen
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Host"] == HOST  # the ingress still routes by host


@pytest.mark.parametrize(
    "given", [f"oauth2_proxy_kubeflow={COOKIE_VALUE}", COOKIE_VALUE], ids=["pair", "value"]
)
def test_the_session_cookie_gets_through(proxy, digit, capsys, given: str) -> None:
    code, _, err = ask(capsys, "--image", digit, "--url", proxy, "--cookie", given)
    assert code == 0, err
    (headers,) = AuthProxy.seen
    assert headers["Cookie"] == f"oauth2_proxy_kubeflow={COOKIE_VALUE}"
    assert "Authorization" not in headers


def test_the_cookie_comes_from_the_environment_too(proxy, digit, capsys, monkeypatch) -> None:
    monkeypatch.setenv(client.COOKIE_VARIABLE, COOKIE_VALUE)
    code, _, err = ask(capsys, "--image", digit, "--url", proxy)
    assert code == 0, err


def test_without_credentials_the_login_redirect_is_reported(proxy, digit, capsys) -> None:
    code, out, err = ask(capsys, "--image", digit, "--url", proxy)
    assert code == 1 and out == ""
    assert "redirected to http://127.0.0.1/dex/auth" in err
    assert "state=" not in err  # the login URL's query is not worth printing
    assert "--token or --cookie" in err
    assert len(AuthProxy.seen) == 1  # the redirect was not followed


def test_a_refused_token_is_an_error_that_does_not_echo_it(proxy, digit, capsys) -> None:
    code, _, err = ask(capsys, "--image", digit, "--url", proxy, "--token", TOKEN[::-1])
    assert code == 1
    assert err.strip() == "error: the server answered 401: Unauthorized"
    assert TOKEN[::-1] not in err


def test_help_never_shows_a_credential(capsys, monkeypatch) -> None:
    monkeypatch.setenv(client.TOKEN_VARIABLE, TOKEN)
    monkeypatch.setenv(client.COOKIE_VARIABLE, COOKIE_VALUE)
    with pytest.raises(SystemExit):
        client.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--token" in out and "$KUBEFLOW_TOKEN" in out and "$KUBEFLOW_COOKIE" in out
    assert TOKEN not in out and COOKIE_VALUE not in out


def test_an_answer_that_is_not_a_prediction_is_an_error(proxy, digit, capsys) -> None:
    # What a misrouted request can get: the ingress's own page, with a 200.
    code, _, err = ask(capsys, "--image", digit, "--url", proxy + "/nowhere", "--token", TOKEN)
    assert code == 1
    assert "is not a v1 prediction" in err
