"""Serve the trained MNIST CNN with KServe: V1 and Open Inference (V2) REST, pixels or PNG.

    python -m mnist.serve --model_name mnist --model-dir /tmp/mnist --http_port 8080
    python -m mnist.client --image digit.png          # in another terminal

--model-dir (KServe's --model_dir also works) holds the model.keras that mnist.train writes; on
a cluster KServe's storage initializer puts the `storageUri` content in /mnt/models, the default.

Requests (a batch of 1 to --max-batch-size images; every image is one MNIST digit). Send a
batch per request rather than one image each: a batch costs little more than one image
(mnist/README.md has the figures).

* V1, POST /v1/models/mnist:predict, `{"instances": [image, ...]}` where an image is either
  a 28 x 28 array of pixel values 0 to 255 (MNIST's own scale, white digit on black), or
  `{"b64": "<base64 of a PNG file>"}`, TF Serving's JSON encoding of binary values. Answer:
  `{"predictions": [{"digit": 7, "probabilities": [p0, ..., p9]}, ...]}`.
* V2, POST /v2/models/mnist/infer, one input tensor named `image`: FP32, FP64, UINT8, INT32 or
  INT64 of shape [N, 28, 28] holding pixel values 0 to 255, or BYTES of shape [N] holding PNG
  files (base64 text in JSON; raw PNG bytes with the binary-data extension). Answer: two
  outputs, `digit` INT64 [N] and `probabilities` FP32 [N, 10]. The binary-data extension
  (header Inference-Header-Content-Length, input parameter `binary_data_size`, and
  `"binary_data_output": true` for raw outputs) is the fastest way in: UINT8 pixels arrive as
  one np.frombuffer, with no JSON numbers to parse.

Pixels are scaled to [0, 1] exactly as in training (`mnist.data.normalize`).

PNG rules: decoded with Pillow; 8-bit greyscale, palette or colour PNGs only; transparency is
flattened onto white, then the image is converted to greyscale ("L", ITU-R 601-2 luma). It must
be square and at most 1024 pixels a side; a side other than 28 is resized to 28 x 28 with the
Lanczos filter. MNIST digits are white on black: when the outermost ring of pixels averages
lighter than mid-grey (above 127.5), the image is taken as a dark digit on a light background
and inverted. A 28 x 28 PNG of an MNIST digit therefore gives the same pixels as the array.

Bad input of any kind gets a 4xx with `{"error": "<what was wrong and what was expected>"}`
(wrong shape, type or size, non-numbers, NaN or infinity, values outside 0 to 255, an empty or
too large batch, a missing field, a body that is not JSON, malformed binary framing, a PNG that
does not decode or is not square), a body over --max-request-bytes gets a 413, and the server
keeps serving: tests/harness/badrequests.py is the suite every case's server passes.

The second half of this file is the KServe plumbing every case's serve.py shares, copied from
here with a `# Copied from mnist.serve.<name>` marker (`make fix-copies` rewrites the copies):
the host option, the body limit, one error shape, and a V2 infer route that parses JSON with
orjson and the binary-data extension with np.frombuffer, and writes the answer from numpy
arrays, where KServe 0.21 builds Python lists element by element.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import math
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

import keras
import kserve
import numpy as np
import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kserve import InferInput, InferOutput, InferRequest, InferResponse, model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput, ModelNotReady
from kserve.logging import logger
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.server import RESTServer
from kserve.utils.numpy_codec import to_np_dtype
from PIL import Image, ImageOps
from starlette.exceptions import HTTPException
from uvicorn.importer import import_from_string

from mnist import data
from mnist.cli import fail, positive_int

INPUT = "image"  # the one V2 input, as get_input_types() declares it
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
                f"no model at {path}: --model-dir must hold the model.keras that "
                "`python -m mnist.train --model-dir DIR` writes"
            )
        self.model = keras.saving.load_model(path)
        self.classify(np.zeros((1, SIDE, SIDE), np.float32))  # trace now, not on the first request
        self.ready = True
        return self.ready

    def classify(self, images: np.ndarray) -> np.ndarray:
        """(N, 28, 28) pixels in 0..255 -> (N, 10) float32 class probabilities."""
        # predict_on_batch, not predict: predict builds a dataset per call (~50x slower here).
        probabilities = self.model.predict_on_batch(data.normalize(images))
        return finite_output(np.asarray(probabilities, np.float32), "the probabilities", "pixels")

    def predict(self, payload: dict | InferRequest, headers: dict | None = None):
        if isinstance(payload, InferRequest):
            probabilities = self.classify(self._v2_images(payload))
            outputs = [
                InferOutput("digit", [len(probabilities)], "INT64", probabilities.argmax(axis=1)),
                InferOutput("probabilities", list(probabilities.shape), "FP32", probabilities),
            ]
            # V2 needs a string id: echo the caller's, or make one.
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, outputs)
        probabilities = self.classify(self._v1_images(payload))
        digits = probabilities.argmax(axis=1).tolist()
        # Rows of the float32 array: orjson writes each as the shortest decimals that read back
        # to the same float32, "0.9981" rather than "0.9980999827384949".
        return {
            "predictions": [
                {"digit": d, "probabilities": p} for d, p in zip(digits, probabilities, strict=True)
            ]
        }

    def get_input_types(self) -> list[dict]:
        return [{"name": INPUT, "datatype": "FP32", "shape": [-1, SIDE, SIDE]}]

    def get_output_types(self) -> list[dict]:
        return [
            {"name": "digit", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, NUM_CLASSES]},
        ]

    def _v1_images(self, payload: object) -> np.ndarray:
        instances = v1_instances(payload)
        self._check_batch_size(len(instances), "instances")
        try:  # the whole batch as one array: the common case, checked in one pass
            batch = np.asarray(instances)
        except ValueError:  # ragged, or pixels and PNGs mixed: look at each image below
            batch = None
        if batch is None or batch.dtype.kind not in "iuf" or batch.shape[1:] != (SIDE, SIDE):
            batch = np.stack([_v1_image(x, f"instances[{i}]") for i, x in enumerate(instances)])
        return check_pixels(batch, "instances")

    def _v2_images(self, request: InferRequest) -> np.ndarray:
        if [t.name for t in request.inputs] != [INPUT]:
            raise InvalidInput(
                f"expected exactly one input tensor, named {INPUT!r}, got "
                f"{[t.name for t in request.inputs]}: {V2_EXAMPLE}"
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
        values = input_array(tensor, what)
        if tensor.datatype == "BYTES":
            return np.stack(
                [
                    png_pixels(_png_bytes(v, f"{what}[{i}]"), f"{what}[{i}]")
                    for i, v in enumerate(values)
                ]
            )
        return check_pixels(values, what)

    def _check_batch_size(self, size: int, what: str) -> None:
        if size < 1:
            raise InvalidInput(f"{what}: expected a non-empty batch of images, got {size}")
        if size > self.max_batch_size:
            raise InvalidInput(
                f"{what}: at most {self.max_batch_size} images per request, got {size}; "
                "split the batch"
            )


def _v1_image(instance: object, what: str) -> np.ndarray:
    """One V1 instance, pixels or {"b64": PNG}, as a 28 x 28 array (its range checked later)."""
    if isinstance(instance, dict):
        if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
            raise InvalidInput(
                f'{what}: expected {{"b64": "<base64 PNG>"}} or a 28x28 array of '
                f"pixel values, got an object with keys {sorted(instance)}"
            )
        return png_pixels(_b64decode(instance["b64"], what), what)
    try:
        pixels = np.asarray(instance)
    except ValueError as e:  # ragged nesting
        raise InvalidInput(f"{what}: expected a 28x28 array of pixel values: {e}") from e
    if pixels.dtype.kind not in "iuf":
        raise InvalidInput(
            f"{what}: expected numbers (pixel values 0-255), got values of type {pixels.dtype}"
        )
    if pixels.shape != (SIDE, SIDE):
        raise InvalidInput(
            f"{what}: expected shape [28, 28] (a 28x28 array of pixel values), "
            f"got {list(pixels.shape)}"
        )
    return pixels


def check_pixels(images: np.ndarray, what: str) -> np.ndarray:
    """A batch of N x 28 x 28 numbers as float32 pixels 0..255, or InvalidInput naming the
    first image that is not, in a few whole-array passes."""
    if images.dtype.kind not in "iuf":
        raise InvalidInput(
            f"{what}: expected numbers (pixel values 0-255), got values of type {images.dtype}"
        )
    with np.errstate(invalid="ignore"):  # NaN compares false: caught by isfinite
        bad = ~np.isfinite(images) | (images < 0) | (images > 255)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(images), -1).any(axis=1))[0])
        image = images[i]
        if not np.isfinite(image).all():
            raise InvalidInput(
                f"{what}[{i}]: expected finite pixel values 0-255, got NaN or infinity"
            )
        raise InvalidInput(
            f"{what}[{i}]: expected pixel values 0-255 (MNIST's scale, not 0-1), got values "
            f"from {image.min()} to {image.max()}"
        )
    return images.astype(np.float32, copy=False)


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


# --- KServe plumbing: every case's serve.py has a copy of each definition below ----------------
#
# Module names a copy relies on: V1_EXAMPLE and V2_EXAMPLE (what a request looks like, for
# error messages), and DEFAULT_MAX_REQUEST_BYTES.


def v1_instances(payload: object) -> list:
    """The `instances` list of a V1 body, or InvalidInput saying what was expected."""
    if isinstance(payload, bytes):
        # KServe hands over the raw body when Content-Type is not JSON.
        raise InvalidInput(f"expected a JSON body (Content-Type: application/json): {V1_EXAMPLE}")
    # KServe checks that `instances` is a list when it is there, not that it is there.
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput(f"expected a JSON object with an 'instances' list: {V1_EXAMPLE}")
    if not isinstance(payload["instances"], list):
        raise InvalidInput(f"instances: expected a list: {V1_EXAMPLE}")
    return payload["instances"]


def decode_v2(body: bytes, headers: Mapping[str, str], model_name: str) -> InferRequest:
    """An Open Inference (V2) request, JSON or binary-data extension, checked field by field.

    Its inputs hold numpy arrays: JSON numbers in one np.asarray, binary numbers through
    np.frombuffer (no copy), BYTES as bytes (never decoded as text). Whether the values fill
    the shape is input_array's to check, once the model has said what shape it expects.
    """
    length = headers.get("inference-header-content-length")
    if length is None:
        head, binary = parse_json(body, "the body"), memoryview(b"")
    else:
        if not (length.isascii() and length.isdigit() and 0 < int(length) <= len(body)):
            raise InvalidInput(
                f"Inference-Header-Content-Length: expected the length of the JSON at the "
                f"start of the body, 1 to {len(body)} bytes, got {length!r}"
            )
        json_part = f"the first {length} bytes (Inference-Header-Content-Length)"
        head = parse_json(body[: int(length)], json_part)
        binary = memoryview(body)[int(length) :]
    if not isinstance(head, dict):
        raise InvalidInput(f"expected a JSON object, got {type(head).__name__}: {V2_EXAMPLE}")
    if "inputs" not in head:
        raise InvalidInput(f"inputs: Field required; expected {V2_EXAMPLE}")
    if not isinstance(head["inputs"], list) or not head["inputs"]:
        raise InvalidInput(f"inputs: expected a non-empty list of input tensors: {V2_EXAMPLE}")
    inputs, offset = [], 0
    for i, spec in enumerate(head["inputs"]):
        tensor, used = decode_input(spec, f"inputs[{i}]", binary[offset:])
        if any(t.name == tensor.name for t in inputs):
            raise InvalidInput(
                f"inputs: duplicate name {tensor.name!r}; each input tensor needs its own name"
            )
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes after the inputs' binary data: the inputs' "
            "parameters.binary_data_size must add up to the bytes after the JSON"
        )
    if head.get("id") is not None and not isinstance(head["id"], str):
        raise InvalidInput(f"id: expected text, got {head['id']!r}")
    outputs = head.get("outputs")
    if outputs is not None and not isinstance(outputs, list):
        raise InvalidInput(f'outputs: expected a list of {{"name": ...}} objects, got {outputs!r}')
    requested = []
    for i, output in enumerate(outputs or []):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidInput(
                f'outputs[{i}]: expected {{"name": "<output name>"}}, got {output!r}'
            )
        params = scalar_parameters(output, f"outputs[{i}].parameters")
        requested.append(RequestedOutput(output["name"], params))
    return InferRequest(
        model_name,
        inputs,
        request_id=head.get("id"),
        parameters=scalar_parameters(head, "parameters"),
        request_outputs=requested or None,
    )


def parse_json(text: bytes, what: str) -> object:
    """orjson's reading of text, or the stdlib's where orjson refuses NaN or Infinity (so that
    the model can say that it wants finite numbers); InvalidInput when it is not JSON at all."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as e:
            raise InvalidInput(
                f"{what} is not valid JSON ({e}); expected {V2_EXAMPLE}, or the binary data "
                "extension: that JSON, then the data, with an Inference-Header-Content-Length "
                "header"
            ) from e


def scalar_parameters(owner: dict, what: str) -> dict:
    """owner's "parameters": an object of numbers, text and booleans, as V2 allows."""
    parameters = owner.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{what}: expected an object, got {parameters!r}")
    for key, value in parameters.items():
        if not isinstance(value, str | int | float):  # bool is an int
            raise InvalidInput(
                f"{what}.{key}: expected a number, text or true/false, got {value!r}"
            )
    return dict(parameters)


def decode_input(spec: object, where: str, binary: memoryview) -> tuple[InferInput, int]:
    """One V2 input tensor and how many of the binary bytes it used."""
    if not isinstance(spec, dict):
        raise InvalidInput(
            f"{where}: expected an object with name, shape, datatype and data, got {spec!r}"
        )
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}.name: expected the input's name, got {name!r}")
    what = f"input {name!r}"
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise InvalidInput(f"{what}: shape: expected a list of whole numbers, got {shape!r}")
    datatype = spec.get("datatype")
    if not isinstance(datatype, str) or to_np_dtype(datatype) is None:
        raise InvalidInput(
            f"{what}: datatype: expected BOOL, UINT8-64, INT8-64, FP16, FP32, FP64 or BYTES, "
            f"got {datatype!r}"
        )
    parameters = scalar_parameters(spec, f"{what}: parameters")
    size = parameters.pop("binary_data_size", None)
    if "data" in spec and size is not None:
        raise InvalidInput(
            f"{what}: both data and parameters.binary_data_size: send the values in the JSON "
            "or after it, not both"
        )
    if "data" in spec:
        return InferInput(name, shape, datatype, json_values(spec["data"], datatype, what)), 0
    if size is None:
        raise InvalidInput(
            f"{what}: expected data (JSON) or parameters.binary_data_size (the binary data "
            "extension)"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidInput(
            f"{what}: parameters.binary_data_size: expected a byte count >= 0, got {size!r}"
        )
    if size > len(binary):
        raise InvalidInput(
            f"{what}: binary_data_size {size} goes past the end of the body ({len(binary)} "
            "bytes left): the body is cut short, or a binary_data_size is wrong"
        )
    values = binary_values(binary[:size], datatype, what)
    return InferInput(name, shape, datatype, values, parameters), size


def json_values(data: object, datatype: str, what: str) -> np.ndarray:
    """A JSON tensor's data as an array of datatype, in one conversion, or InvalidInput."""
    if not isinstance(data, list):
        raise InvalidInput(f"{what}: data: expected a list of values, got {data!r:.40}")
    where = f"{what}: data does not match {datatype}"
    if datatype == "BYTES":  # text, in nested lists or not

        def leaves(items: list):
            for item in items:
                yield from leaves(item) if isinstance(item, list) else (item,)

        texts = list(leaves(data))
        if not all(isinstance(text, str) for text in texts):
            raise InvalidInput(f"{where}: expected text for each element")
        values = np.empty(len(texts), dtype=object)
        values[:] = texts
        return values
    try:
        values = np.asarray(data)
    except ValueError as e:  # ragged nesting
        raise InvalidInput(f"{where}: {e}") from e
    dtype = np.dtype(to_np_dtype(datatype))
    if (values.dtype.kind == "b") != (dtype.kind == "b") or values.dtype.kind not in "biuf":
        got = "true/false" if values.dtype.kind == "b" else "text, null, objects or huge integers"
        want = "true/false" if dtype.kind == "b" else "numbers"
        raise InvalidInput(f"{where}: expected {want}, got {got}")
    if dtype.kind in "iu":
        if values.dtype.kind == "f" and not np.array_equal(values, np.trunc(values)):
            raise InvalidInput(f"{where}: expected whole numbers, got fractions")
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise InvalidInput(
                f"{where}: values from {values.min()} to {values.max()} do not fit {datatype} "
                f"({info.min} to {info.max})"
            )
    with np.errstate(over="ignore"):  # beyond FP32: infinity, which the model refuses
        return values.astype(dtype, copy=False)


def binary_values(chunk: memoryview, datatype: str, what: str) -> np.ndarray:
    """A binary-data tensor: numbers through np.frombuffer, BYTES as length-prefixed bytes."""
    if datatype != "BYTES":
        dtype = np.dtype(to_np_dtype(datatype)).newbyteorder("<")
        if len(chunk) % dtype.itemsize:
            raise InvalidInput(
                f"{what}: binary_data_size {len(chunk)} is not a whole number of {datatype} "
                f"values ({dtype.itemsize} bytes each)"
            )
        return np.frombuffer(chunk, dtype=dtype)
    items, offset = [], 0
    while offset < len(chunk):
        length = struct.unpack_from("<I", chunk, offset)[0] if offset + 4 <= len(chunk) else None
        if length is None or offset + 4 + length > len(chunk):
            raise InvalidInput(
                f"{what}: BYTES element {len(items)} runs past its binary_data_size "
                f"({len(chunk)} bytes): each element is a 4-byte little-endian length, then "
                "that many bytes"
            )
        items.append(bytes(chunk[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    values = np.empty(len(items), dtype=object)
    values[:] = items
    return values


def input_array(tensor: InferInput, what: str) -> np.ndarray:
    """The values of a V2 input as an array of its shape, or InvalidInput saying why not."""
    shape = list(tensor.shape)
    if any(d < 1 for d in shape):
        raise InvalidInput(
            f"{what}: shape {shape} has a zero-sized or negative dimension; expected at least "
            "one value along each"
        )
    values = tensor.data
    if not isinstance(values, np.ndarray):  # KServe decoded it (gRPC, a call in process)
        try:
            values = np.asarray(tensor.as_numpy())
        except (ValueError, TypeError, OverflowError) as e:
            raise InvalidInput(f"{what}: data does not match {tensor.datatype} {shape}: {e}") from e
    if values.size != math.prod(shape):
        raise InvalidInput(
            f"{what}: data does not match {tensor.datatype} {shape}: {values.size} values, "
            f"the shape holds {math.prod(shape)}"
        )
    return values.reshape(shape)


def finite_output(values: np.ndarray, what: str, expected: str) -> np.ndarray:
    """values, or InvalidInput when the model's output overflowed to NaN or infinity: inputs
    beyond what the model handles did that, so the answer is a 4xx, never a 200 with NaN."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InvalidInput(
            f"{what} came out as NaN or infinity: the input is beyond what the model handles; "
            f"expected {expected}"
        )
    return values


def encode_v2(response: InferResponse, request: InferRequest) -> Response:
    """The V2 answer straight from numpy arrays: orjson writes them as JSON lists, or, where
    asked (binary_data_output, an output's binary_data), raw little-endian bytes follow the JSON."""
    outputs = {output.name: output for output in response.outputs}
    wanted = [(r.name, r.parameters or {}) for r in request.request_outputs or []]
    binary_default = (request.parameters or {}).get("binary_data_output", False)
    entries, raws = [], []
    for name, parameters in wanted or [(name, {}) for name in outputs]:
        if name not in outputs:
            raise InvalidInput(f"outputs: no output named {name!r}; there are {list(outputs)}")
        output = outputs[name]
        values = np.asarray(output.data)
        finite_output(values, f"output {name!r}", f"inputs like {V2_EXAMPLE}")
        entry = {"name": name, "shape": list(output.shape), "datatype": output.datatype}
        params = dict(output.parameters or {})
        if parameters.get("binary_data", binary_default):
            if output.datatype == "BYTES":
                items = [v if isinstance(v, bytes) else str(v).encode() for v in values.ravel()]
                raw = b"".join(struct.pack("<I", len(v)) + v for v in items)
            else:
                dtype = np.dtype(to_np_dtype(output.datatype)).newbyteorder("<")
                raw = np.ascontiguousarray(values, dtype).tobytes()
            params["binary_data_size"] = len(raw)
            raws.append(raw)
        elif output.datatype == "BYTES":
            try:
                entry["data"] = [v.decode() if isinstance(v, bytes) else v for v in values.ravel()]
            except UnicodeDecodeError as e:
                raise InvalidInput(
                    f"output {name!r} holds bytes that are not text: ask for it as binary data "
                    '(outputs: [{"name": ..., "parameters": {"binary_data": true}}])'
                ) from e
        else:
            entry["data"] = np.ascontiguousarray(values).ravel()
        entry["parameters"] = params or None
        entries.append(entry)
    head = orjson.dumps(
        {
            "model_name": response.model_name,
            "model_version": response.model_version,
            "id": response.id,
            "parameters": response.parameters,
            "outputs": entries,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if raws:
        return Response(
            head + b"".join(raws),
            media_type="application/octet-stream",
            headers={"inference-header-content-length": str(len(head))},
        )
    return Response(head, media_type="application/json")


def v2_infer_endpoint(dataplane):
    """KServe's V2 infer handler, with decode_v2 reading the body and encode_v2 the answer."""

    async def infer(model_name: str, request: Request) -> Response:
        model = dataplane.get_model_from_registry(model_name)  # ModelNotFound: a 404
        if not await dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        infer_request = decode_v2(await request.body(), request.headers, model_name)
        known = [output["name"] for output in model.get_output_types()]
        for output in infer_request.request_outputs or []:
            if known and output.name not in known:
                raise InvalidInput(f"outputs: no output named {output.name!r}; there are {known}")
        response, response_headers = await dataplane.infer(
            model_name, infer_request, dict(request.headers)
        )
        answer = encode_v2(response, infer_request)
        for key, value in response_headers.items():
            if key.lower() not in ("content-length", "content-type"):
                answer.headers[key] = value
        return answer

    return infer


class RequestTooLarge(HTTPException):
    """A body over the limit. An HTTPException, so that FastAPI's body parsing re-raises it."""


class LimitRequestBody:
    """ASGI middleware: 413 for a body over max_bytes, declared or streamed (chunked).

    A declared one is answered before a byte of it is read, so that a client waiting to send
    (Expect: 100-continue) hears it; uvicorn then reads and drops what a client sends anyway,
    and keeps the connection. A streamed one is cut where it passes the limit.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def message(self, size: str) -> str:
        return (
            f"request body of {size} is over the limit of {self.max_bytes} bytes "
            "(--max-request-bytes); split the batch into smaller requests"
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode()
        if declared.isdigit() and int(declared) > self.max_bytes:
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


async def invalid_input_handler(request: Request, exc: InvalidInput) -> JSONResponse:
    # KServe's own handler logs a whole traceback for every bad request; one line says it.
    logger.info("%s %s: 400 %s", request.method, request.url.path, exc)
    return JSONResponse({"error": str(exc)}, status_code=400)


async def http_error_handler(_: Request, exc: HTTPException) -> JSONResponse:
    # The one error shape, {"error": ...}, for 404, 405, 413... rather than FastAPI's "detail".
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def request_validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI answers a body it cannot parse into a route's model with 422 {"detail": [...]};
    # say it as {"error": "..."} with a 400, and what was expected.
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


class ModelRestServer(RESTServer):
    """KServe's REST server on `host`, with the V2 infer route, the body limit and the error
    shape above. KServe's ModelServer.start() binds 0.0.0.0 and offers no host option."""

    def __init__(self, dataplane, repository, *, host: str, http_port: int, max_request_bytes: int):
        super().__init__(FASTAPI_APP_IMPORT_STRING, dataplane, repository, http_port)
        self.config.host = host
        self.max_request_bytes = max_request_bytes

    def create_application(self) -> None:
        app = import_from_string(FASTAPI_APP_IMPORT_STRING)  # KServe's module-level FastAPI app
        # Routed before KServe's own routes, so that this one answers /v2/models/<name>/infer.
        app.add_api_route(
            "/v2/models/{model_name}/infer",
            v2_infer_endpoint(self.dataplane),
            methods=["POST"],
            response_model=None,
        )
        super().create_application()
        app.add_middleware(LimitRequestBody, max_bytes=self.max_request_bytes)
        # Set after KServe's handlers, so that these answer.
        app.add_exception_handler(InvalidInput, invalid_input_handler)
        app.add_exception_handler(HTTPException, http_error_handler)
        app.add_exception_handler(RequestValidationError, request_validation_handler)


def serve_rest(model: kserve.Model, *, host: str, http_port: int, max_request_bytes: int) -> None:
    """Serve one loaded model over REST on host:http_port until SIGTERM (uvicorn then stops
    gracefully). REST only: the InferenceService exposes one port, so no gRPC server."""
    server = kserve.ModelServer(http_port=http_port, enable_grpc=False)
    server.register_model(model)
    ModelRestServer(
        server.dataplane,
        server.model_repository_extension,
        host=host,
        http_port=http_port,
        max_request_bytes=max_request_bytes,
    ).run()


def add_server_arguments(parser: argparse.ArgumentParser, *, model_files: str) -> None:
    """The flags every serve.py has; KServe's own (--model_name, --http_port...) come after."""
    parser.add_argument(
        "--model-dir",
        "--model_dir",
        dest="model_dir",
        type=Path,
        default=Path("/mnt/models"),
        help=f"folder with {model_files}; where KServe's storage initializer puts the "
        "storageUri (default: %(default)s)",
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="address to listen on; tests use 127.0.0.1 (default: %(default)s)",
    )
    parser.add_argument(
        "--max-request-bytes",
        "--max_request_bytes",
        dest="max_request_bytes",
        type=positive_int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest request body; a larger one gets a 413 (default: %(default)s)",
    )


def load_or_exit(model: kserve.Model) -> None:
    """model.load(), or one line saying what to do and exit 1 when its files are not there."""
    try:
        model.load()
    except FileNotFoundError as e:
        fail(str(e))


# --- the command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    own = argparse.ArgumentParser(add_help=False)
    add_server_arguments(own, model_files="model.keras")
    own.add_argument(
        "--max-batch-size",
        "--max_batch_size",
        dest="max_batch_size",
        type=positive_int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help="most images in one request (default: %(default)s)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m mnist.serve",
        parents=[own, model_server.parser],
        description="Serve the MNIST CNN with KServe (V1 and V2 REST).",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = MnistModel(args.model_name, args.model_dir, args.max_batch_size)
    load_or_exit(model)
    serve_rest(
        model, host=args.host, http_port=args.http_port, max_request_bytes=args.max_request_bytes
    )


if __name__ == "__main__":
    main()
