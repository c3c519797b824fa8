"""Ask the MNIST model server which digit a PNG shows.

    python -m mnist.client --image digit.png                       # a server on localhost:8080
    python -m mnist.client --image a.png b.png --protocol v2
    KUBEFLOW_TOKEN=$(kubectl -n kubeflow-user-example-com create token default-editor) \\
    python -m mnist.client --image digit.png --url http://localhost:8080 \\
        --host-header mnist-kubeflow-user-example-com.example.com  # through Kubeflow's ingress

Each image goes base64-encoded in one request (V1: `{"b64": ...}` instances, V2: a BYTES
tensor), so the server applies its PNG rules (mnist/serve.py): greyscale, square, resized to
28 x 28, inverted when the background is light. Prints, per image, the digit, its probability
and all ten class probabilities. Exits 1 with the server's message when it answers an error.

Kubeflow's ingress lets a request through its auth proxy (oauth2-proxy) with a bearer token
(`--token`, or KUBEFLOW_TOKEN: a Kubernetes ServiceAccount token where the install accepts
them) or the browser's session cookie (`--cookie`, or KUBEFLOW_COOKIE: "oauth2_proxy_kubeflow=
<value>", or the value alone). Neither is ever printed; the environment variables keep them out
of the shell's history and the process list. Without them the proxy answers with a redirect to
its login page, which the client reports instead of following.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import requests

TOKEN_VARIABLE = "KUBEFLOW_TOKEN"
COOKIE_VARIABLE = "KUBEFLOW_COOKIE"
PROXY_COOKIE = "oauth2_proxy_kubeflow"  # cookie_name in Kubeflow's oauth2_proxy.cfg


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Classify PNG digits with the MNIST server.")
    parser.add_argument(
        "--image", type=Path, nargs="+", required=True, help="one or more PNG files (required)"
    )
    parser.add_argument(
        "--url",
        default="http://localhost:8080",
        help="the server or ingress address (default: %(default)s)",
    )
    parser.add_argument("--model", default="mnist", help="model name (default: %(default)s)")
    parser.add_argument(
        "--protocol",
        choices=("v1", "v2"),
        default="v1",
        help="KServe V1 or Open Inference V2 (default: %(default)s)",
    )
    parser.add_argument(
        "--host-header",
        default=None,
        help="Host header for an ingress that routes by host, e.g. "
        "mnist-kubeflow-user-example-com.example.com, KServe's Standard mode (default: none)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait (default: %(default)s)"
    )
    # The defaults are read after parsing, so that --help never shows a credential.
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token for Kubeflow's auth proxy, e.g. `kubectl -n NS create token "
        f"default-editor` (default: ${TOKEN_VARIABLE}, else none)",
    )
    parser.add_argument(
        "--cookie",
        default=None,
        help=f"Kubeflow session cookie, {PROXY_COOKIE}=VALUE or VALUE alone "
        f"(default: ${COOKIE_VARIABLE}, else none)",
    )
    args = parser.parse_args(argv)
    args.token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    args.cookie = args.cookie or os.environ.get(COOKIE_VARIABLE) or None
    return args


def auth_headers(token: str | None, cookie: str | None) -> dict[str, str]:
    """The headers that carry a request through Kubeflow's auth proxy."""
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token.strip()}"
    if cookie:
        cookie = cookie.strip()
        headers["Cookie"] = cookie if "=" in cookie else f"{PROXY_COOKIE}={cookie}"
    return headers


def request_for(images: list[bytes], model: str, protocol: str) -> tuple[str, dict]:
    """The path and JSON body that send these PNG files."""
    encoded = [base64.b64encode(png).decode("ascii") for png in images]
    if protocol == "v1":
        return f"/v1/models/{model}:predict", {"instances": [{"b64": b} for b in encoded]}
    tensor = {"name": "image", "shape": [len(encoded)], "datatype": "BYTES", "data": encoded}
    return f"/v2/models/{model}/infer", {"inputs": [tensor]}


def answers(body: dict, protocol: str) -> list[tuple[int, list[float]]]:
    """(digit, probabilities) per image from a V1 or V2 response body."""
    if protocol == "v1":
        return [(p["digit"], p["probabilities"]) for p in body["predictions"]]
    outputs = {o["name"]: o for o in body["outputs"]}
    digits = outputs["digit"]["data"]
    flat = outputs["probabilities"]["data"]
    width = len(flat) // len(digits)
    return [(d, flat[i * width : (i + 1) * width]) for i, d in enumerate(digits)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        images = [path.read_bytes() for path in args.image]
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    path, body = request_for(images, args.model, args.protocol)
    headers = auth_headers(args.token, args.cookie)
    if args.host_header:
        headers["Host"] = args.host_header
    signed_in = bool(args.token or args.cookie)
    login = f"pass --token or --cookie (or ${TOKEN_VARIABLE}); mnist/README.md shows how"
    try:
        # Not following redirects: an auth proxy's redirect leads to a login page, and the
        # credentials must not travel on to wherever it points.
        response = requests.post(
            args.url.rstrip("/") + path,
            json=body,
            headers=headers,
            timeout=args.timeout,
            allow_redirects=False,
        )
    except requests.RequestException as e:
        print(f"error: no answer from {args.url}: {e}", file=sys.stderr)
        return 1
    if response.is_redirect:
        where = urlsplit(response.headers.get("Location", ""))
        print(
            f"error: the server redirected to {where.scheme}://{where.netloc}{where.path}, "
            + ("a login page: the token or cookie was not accepted" if signed_in else login),
            file=sys.stderr,
        )
        return 1
    if response.status_code >= 400:
        try:
            message = response.json()["error"]
        except (ValueError, TypeError, KeyError):  # an ingress or proxy page, not our JSON
            message = response.text.strip()
        if response.status_code in (401, 403) and not signed_in:
            message += f" ({login})"
        print(f"error: the server answered {response.status_code}: {message}", file=sys.stderr)
        return 1
    try:
        results = answers(response.json(), args.protocol)
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError):
        print(
            f"error: the answer from {args.url} is not a {args.protocol} prediction "
            f"(an ingress page?): {response.text[:200]}",
            file=sys.stderr,
        )
        return 1
    if len(results) != len(args.image):
        print(f"error: {len(args.image)} images sent, {len(results)} answers", file=sys.stderr)
        return 1
    for image, (digit, probabilities) in zip(args.image, results, strict=True):
        print(f"{image}: {digit} (probability {probabilities[digit]:.4f})")
        print("  probabilities: " + " ".join(f"{d}={p:.4f}" for d, p in enumerate(probabilities)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
