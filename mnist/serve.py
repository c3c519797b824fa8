"""Serve the trained MNIST CNN with KServe: V1 and Open Inference (V2) REST, pixels or PNG.

    python -m mnist.serve --model_name mnist --model_dir /tmp/mnist --http_port 8080
    python -m mnist.client --image digit.png          # in another terminal

--model_dir holds the model.keras that mnist.train writes (on a cluster, KServe's storage
initializer puts the `storageUri` content in /mnt/models, the default).

Requests (a batch of 1 to --max_batch_size images; every image is one MNIST digit):

* V1, POST /v1/models/mnist:predict, `{"instances": [image, ...]}` where an image is either
  a 28 x 28 array of pixel values 0 to 255 (MNIST's own scale, white digit on black), or
  `{"b64": "<base64 of a PNG file>"}`, TF Serving's JSON encoding of binary values. Answer:
  `{"predictions": [{"digit": 7, "probabilities": [p0, ..., p9]}, ...]}`.
* V2, POST /v2/models/mnist/infer, one input tensor: FP32, FP64, UINT8, INT32 or INT64 of
  shape [N, 28, 28] holding pixel values 0 to 255, or BYTES of shape [N] holding base64 PNGs
  (raw PNG bytes also work with the binary-data extension). Answer: two outputs, `digit`
  INT64 [N] and `probabilities` FP32 [N, 10].

Pixels are scaled to [0, 1] exactly as in training (`mnist.data.normalize`).

PNG rules: decoded with Pillow; 8-bit greyscale, palette or colour PNGs only; transparency is
flattened onto white, then the image is converted to greyscale ("L", ITU-R 601-2 luma). It must
be square and at most 1024 pixels a side; a side other than 28 is resized to 28 x 28 with the
Lanczos filter. MNIST digits are white on black: when the outermost ring of pixels averages
lighter than mid-grey (above 127.5), the image is taken as a dark digit on a light background
and inverted. A 28 x 28 PNG of an MNIST digit therefore gives the same pixels as the array.

Bad input gets a 400 that says what was expected (wrong shape, non-numbers, NaN or infinity,
values outside 0 to 255, an empty or too large batch, a missing field, a body that is not JSON,
a PNG that does not decode or is not square), and a body over --max_request_bytes gets a 413;
the server keeps serving. The command line follows tests/fixtures/serving/echo_model.py: KServe's
own flags plus --model_dir and --host (0.0.0.0 in a pod, 127.0.0.1 in tests).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import uuid
from pathlib import Path

import keras
import kserve
import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import InferOutput, InferRequest, InferResponse, model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput
from kserve.protocol.rest.server import RESTServer
from PIL import Image, ImageOps
from starlette.exceptions import HTTPException
from uvicorn.importer import import_from_string

from mnist import data

SIDE = 28
NUM_CLASSES = 10
MAX_PNG_SIDE = 1024  # bounds the pixels one small, highly compressed PNG can expand to
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")  # what Pillow opens 8-bit PNGs as
V2_NUMERIC = ("FP32", "FP64", "UINT8", "INT32", "INT64")
DEFAULT_MAX_BATCH_SIZE = 256
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # a full batch as JSON integers is about 0.8 MiB

V1_EXAMPLE = '{"instances": [<28x28 array of 0-255 pixel values> or {"b64": "<base64 PNG>"}, ...]}'
V2_EXAMPLE = (
    '{"inputs": [{"name": "image", "shape": [N, 28, 28], "datatype": "FP32", "data": [...]}]} '
    'or {"inputs": [{"name": "image", "shape": [N], "datatype": "BYTES", '
    '"data": ["<base64 PNG>", ...]}]}'
)


class MnistModel(kserve.Model):
    """The Keras CNN from model.keras behind KServe's V1 and V2 protocols."""

    def __init__(
        self, name: str, model_dir: Path, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    ) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.max_batch_size = max_batch_size
        self.model: keras.Model | None = None

    def load(self) -> bool:
        path = self.model_dir / "model.keras"
        if not path.is_file():
            raise FileNotFoundError(
                f"no model at {path}: --model_dir must hold the model.keras that "
                "`python -m mnist.train --model-dir DIR` writes"
            )
        self.model = keras.saving.load_model(path)
        self.classify(np.zeros((1, SIDE, SIDE), np.float32))  # trace now, not on the first request
        self.ready = True
        return self.ready

    def classify(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) pixels in 0..255 -> (N, 10) float32 class probabilities."""
        # predict_on_batch, not predict: predict builds a dataset per call (~50x slower here).
        return np.asarray(self.model.predict_on_batch(data.normalize(images)), np.float32)

    def predict(self, payload: dict | InferRequest, headers: dict | None = None):
        if isinstance(payload, InferRequest):
            probabilities = self.classify(self._v2_images(payload))
            digits = probabilities.argmax(axis=1)
            outputs = [
                InferOutput("digit", [len(digits)], "INT64", data=digits.tolist()),
                InferOutput(
                    "probabilities",
                    list(probabilities.shape),
                    "FP32",
                    data=probabilities.ravel().tolist(),
                ),
            ]
            # V2 needs a string id: echo the caller's, or make one.
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, outputs)
        probabilities = self.classify(self._v1_images(payload))
        return {
            "predictions": [
                {"digit": int(p.argmax()), "probabilities": _short_floats(p)} for p in probabilities
            ]
        }

    def get_input_types(self) -> list[dict]:
        return [{"name": "image", "datatype": "FP32", "shape": [-1, SIDE, SIDE]}]

    def get_output_types(self) -> list[dict]:
        return [
            {"name": "digit", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, NUM_CLASSES]},
        ]

    def _v1_images(self, payload: object) -> np.ndarray:
        if isinstance(payload, bytes | str):
            # KServe hands over the raw body when Content-Type is not JSON.
            raise InvalidInput(
                f"expected a JSON body (Content-Type: application/json): {V1_EXAMPLE}"
            )
        # KServe only checks that `instances` is a list when present, not that it is there.
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput(f"expected a JSON object with an 'instances' list: {V1_EXAMPLE}")
        instances = payload["instances"]
        self._check_batch_size(len(instances), "instances")
        images = []
        for i, instance in enumerate(instances):
            what = f"instances[{i}]"
            if isinstance(instance, dict):
                if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
                    raise InvalidInput(
                        f'{what}: expected {{"b64": "<base64 PNG>"}} or a 28x28 array of '
                        f"pixel values, got an object with keys {sorted(instance)}"
                    )
                images.append(png_pixels(_b64decode(instance["b64"], what), what))
            else:
                images.append(check_pixels(instance, (SIDE, SIDE), what))
        return np.stack(images)

    def _v2_images(self, request: InferRequest) -> np.ndarray:
        if len(request.inputs) != 1:
            raise InvalidInput(
                f"expected exactly one input tensor, got {len(request.inputs)}: {V2_EXAMPLE}"
            )
        tensor = request.inputs[0]
        what = f"input {tensor.name!r}"
        if tensor.datatype not in (*V2_NUMERIC, "BYTES"):
            raise InvalidInput(
                f"{what}: expected datatype {', '.join(V2_NUMERIC)} or BYTES, "
                f"got {tensor.datatype}: {V2_EXAMPLE}"
            )
        shape = list(tensor.shape)
        if tensor.datatype == "BYTES":
            shape_ok, want = len(shape) == 1, "[N]"
        else:
            shape_ok, want = len(shape) == 3 and shape[1:] == [SIDE, SIDE], "[N, 28, 28]"
        if not shape_ok:
            raise InvalidInput(f"{what}: expected shape {want}, got {shape}: {V2_EXAMPLE}")
        self._check_batch_size(shape[0], what)
        try:
            values = tensor.as_numpy()
        except (ValueError, TypeError, OverflowError) as e:
            # as_numpy raises when data does not fill the shape or does not fit the datatype.
            raise InvalidInput(f"{what}: data does not match {tensor.datatype} {shape}: {e}") from e
        if tensor.datatype == "BYTES":
            return np.stack(
                [
                    png_pixels(_png_bytes(value, f"{what}[{i}]"), f"{what}[{i}]")
                    for i, value in enumerate(values)
                ]
            )
        return check_pixels(values, tuple(shape), what)

    def _check_batch_size(self, size: int, what: str) -> None:
        if size < 1:
            raise InvalidInput(f"{what}: expected a non-empty batch of images, got {size}")
        if size > self.max_batch_size:
            raise InvalidInput(
                f"{what}: at most {self.max_batch_size} images per request, got {size}; "
                "split the batch"
            )


def check_pixels(value: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """value as a float32 array of `shape`, or InvalidInput saying why it is not MNIST pixels."""
    want = "x".join(str(s) for s in shape)
    try:
        pixels = np.asarray(value)
    except ValueError as e:  # ragged nesting
        raise InvalidInput(f"{what}: expected a {want} array of pixel values: {e}") from e
    if pixels.dtype.kind not in "iuf":
        raise InvalidInput(
            f"{what}: expected numbers (pixel values 0-255), got values of type {pixels.dtype}"
        )
    if pixels.shape != shape:
        raise InvalidInput(
            f"{what}: expected shape {list(shape)} (a {want} array of pixel values), "
            f"got {list(pixels.shape)}"
        )
    if not np.isfinite(pixels).all():
        raise InvalidInput(f"{what}: expected finite pixel values 0-255, got NaN or infinity")
    low, high = pixels.min(), pixels.max()
    if low < 0 or high > 255:
        raise InvalidInput(
            f"{what}: expected pixel values 0-255 (MNIST's scale, not 0-1), got values from "
            f"{low} to {high}"
        )
    return pixels.astype(np.float32)


def png_pixels(blob: bytes, what: str) -> np.ndarray:
    """The 28 x 28 float32 pixels of a PNG under the rules in the module docstring."""
    if not blob.startswith(PNG_SIGNATURE):
        raise InvalidInput(f"{what}: expected a PNG file (base64-encoded), got other bytes")
    try:
        with Image.open(io.BytesIO(blob), formats=["PNG"]) as image:
            width, height = image.size  # read from the header, before decoding any pixels
            if width != height:
                raise InvalidInput(
                    f"{what}: expected a square PNG (ideally 28x28), got {width}x{height}"
                )
            if width > MAX_PNG_SIDE:
                raise InvalidInput(
                    f"{what}: expected a PNG at most {MAX_PNG_SIDE} pixels a side, got {width}"
                )
            if image.mode not in PNG_MODES:
                raise InvalidInput(
                    f"{what}: expected an 8-bit greyscale or colour PNG, got mode {image.mode}"
                )
            if image.mode in ("LA", "RGBA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
            grey = image.convert("L")
    except InvalidInput:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... on bad files
        raise InvalidInput(f"{what}: could not decode the PNG: {e}") from e
    pixels = np.asarray(grey)
    ring = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    if ring.mean() > 127.5:  # a light background: a dark digit on paper, MNIST's negative
        grey = ImageOps.invert(grey)
    if grey.size != (SIDE, SIDE):
        grey = grey.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.float32)


def _b64decode(text: str | bytes, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput(f"{what}: expected base64 of a PNG file: {e}") from e


def _png_bytes(value: object, what: str) -> bytes:
    """A V2 BYTES element: raw PNG bytes (binary extension) or base64 text (JSON)."""
    if isinstance(value, bytes) and value.startswith(PNG_SIGNATURE):
        return value
    if isinstance(value, str | bytes):
        return _b64decode(value, what)
    raise InvalidInput(f"{what}: expected a base64 PNG string, got {type(value).__name__}")


def _short_floats(values: np.ndarray) -> list[float]:
    # float32 values as the shortest decimals that read back to the same float32: exact for
    # a float32 client, and "0.9981" rather than "0.9980999827384949" in the JSON.
    return [float(str(v)) for v in np.asarray(values, np.float32)]


class RequestTooLarge(HTTPException):
    """A body over the limit. An HTTPException, so that FastAPI's body parsing re-raises it."""


class LimitRequestBody:
    """ASGI middleware: 413 for a body over max_bytes, declared or streamed (chunked)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def message(self, size: str) -> str:
        return (
            f"request body of {size} is over the limit of {self.max_bytes} bytes "
            "(--max_request_bytes); send fewer images per request"
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode()
        if declared.isdigit() and int(declared) > self.max_bytes:
            # Answer before reading a byte of it.
            response = JSONResponse({"error": self.message(f"{declared} bytes")}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise RequestTooLarge(413, self.message(f"more than {self.max_bytes} bytes"))
            return message

        await self.app(scope, limited_receive, send)


async def request_too_large_handler(_: Request, exc: RequestTooLarge) -> JSONResponse:
    # KServe's error body shape, {"error": ...}, rather than FastAPI's {"detail": ...}.
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def request_validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI answers a V2 body that does not parse with 422 {"detail": [...]}; the Open
    # Inference protocol's error is {"error": "..."}, so say it that way, and what was expected.
    errors = exc.errors()
    # KServe accepts the body as an InferenceRequest or raw bytes; the bytes error is noise.
    errors = [e for e in errors if "bytes" not in map(str, e["loc"])] or errors
    problems = "; ".join(
        "the body is not valid JSON"
        if e["type"] == "json_invalid"
        else f"{'.'.join(str(p) for p in e['loc'][2:]) or 'body'}: {e['msg']}"
        for e in errors
    )
    return JSONResponse({"error": f"{problems}; expected {V2_EXAMPLE}"}, status_code=400)


def serve_rest(model: kserve.Model, *, host: str, http_port: int, max_request_bytes: int) -> None:
    """Serve one loaded model over KServe's REST app on host:http_port until SIGTERM."""
    server = kserve.ModelServer(http_port=http_port, enable_grpc=False)
    server.register_model(model)
    rest = RESTServer(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        http_port,
    )
    rest.config.host = host  # the one thing ModelServer.start() cannot set
    # KServe has no body limit of its own; its app is a module-level FastAPI we can extend.
    app = import_from_string(FASTAPI_APP_IMPORT_STRING)
    app.add_middleware(LimitRequestBody, max_bytes=max_request_bytes)
    app.add_exception_handler(RequestTooLarge, request_too_large_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    rest.run()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        parents=[model_server.parser], description="Serve the MNIST CNN with KServe."
    )
    parser.add_argument(
        "--model_dir", default="/mnt/models", help="folder with model.keras (default: %(default)s)"
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="address to listen on; tests use 127.0.0.1 (default: %(default)s)",
    )
    parser.add_argument(
        "--max_batch_size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help="most images in one request (default: %(default)s)",
    )
    parser.add_argument(
        "--max_request_bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest request body; larger ones get a 413 (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = MnistModel(args.model_name, Path(args.model_dir), args.max_batch_size)
    model.load()
    serve_rest(
        model, host=args.host, http_port=args.http_port, max_request_bytes=args.max_request_bytes
    )


if __name__ == "__main__":
    main()
