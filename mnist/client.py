"""Ask the MNIST model server which digit a PNG shows.

    python -m mnist.client --image digit.png                       # a server on localhost:8080
    python -m mnist.client --image a.png b.png --protocol v2
    python -m mnist.client --image digit.png --url http://INGRESS_IP \\
        --host-header mnist.kubeflow-user-example-com.example.com  # through a cluster ingress

Each image goes base64-encoded in one request (V1: `{"b64": ...}` instances, V2: a BYTES
tensor), so the server applies its PNG rules (mnist/serve.py): greyscale, square, resized to
28 x 28, inverted when the background is light. Prints, per image, the digit, its probability
and all ten class probabilities. Exits 1 with the server's message when it answers an error.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

import requests


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
        "mnist.kubeflow-user-example-com.example.com (default: none)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait (default: %(default)s)"
    )
    return parser.parse_args(argv)


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
    headers = {"Host": args.host_header} if args.host_header else {}
    try:
        response = requests.post(
            args.url.rstrip("/") + path, json=body, headers=headers, timeout=args.timeout
        )
    except requests.RequestException as e:
        print(f"error: no answer from {args.url}: {e}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        try:
            message = response.json()["error"]
        except (ValueError, TypeError, KeyError):  # an ingress or proxy page, not our JSON
            message = response.text
        print(f"error: the server answered {response.status_code}: {message}", file=sys.stderr)
        return 1
    results = answers(response.json(), args.protocol)
    if len(results) != len(args.image):
        print(f"error: {len(args.image)} images sent, {len(results)} answers", file=sys.stderr)
        return 1
    for image, (digit, probabilities) in zip(args.image, results, strict=True):
        print(f"{image}: {digit} (probability {probabilities[digit]:.4f})")
        print("  probabilities: " + " ".join(f"{d}={p:.4f}" for d, p in enumerate(probabilities)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
