"""Serve the review classifier and its word attributions with KServe (V1 and Open Inference V2).

    python -m imdb_sentiment.serve --model_name imdb --model-dir /tmp/imdb --host 127.0.0.1
    curl -H 'Content-Type: application/json' -d @imdb_sentiment/sample/request.json localhost:8080/v1/models/imdb:predict
    curl -H 'Content-Type: application/json' -d @imdb_sentiment/sample/request.json localhost:8080/v1/models/imdb:explain

--model-dir (KServe's --model_dir also works) holds what `python -m imdb_sentiment.train` (or
train_distributed) writes: model.keras (the BiLSTM, with its TextVectorization inside, so requests
carry raw text) or model.joblib (the TF-IDF baseline), and calibration.json. On a cluster KServe's
storage initializer puts the model folder at /mnt/models, the default.

Requests carry raw review text, 1 to --max-reviews reviews, each at most --max-review-chars
characters. Both models clean text themselves (HTML line breaks, case, punctuation), with the rule
they were trained with. Send several reviews per request: the BiLSTM scores 64 reviews in about
3.5 times the time of one (benchmarks/imdb_serving.py has the figures).

* V1 predict, POST /v1/models/imdb:predict, `{"instances": ["review text", ...]}`. Answer, one
  object per review: `{"predictions": [{"label": "positive", "probability_positive": 0.97},
  ...]}`. `probability_positive` is the calibrated probability that the review is positive
  (Platt scaling fitted on held-out reviews, model.Calibration), whichever the label;
  `label` is "positive" when it is 0.5 or more.
* V1 explain, POST /v1/models/imdb:explain, the same body with at most --max-explain-reviews
  reviews, and optionally `"top_words"` (1 to 100, default --top-words). Answer:
  `{"explanations": [{"label", "probability_positive", "method": "occlusion", "words": [{"word":
  "wonderful", "attribution": 0.21, "count": 2}, ...]}]}`: the words whose removal moves the
  probability most, with sign (imdb_sentiment/explain.py says exactly how). A review costs one
  prediction per distinct word: 60 ms for a sample review with the BiLSTM here, about 8 s (12 s
  with TF-IDF, which reads every word) for a review of 20,000 characters of distinct words.
* V2 infer, POST /v2/models/imdb/infer, one input named `review`, BYTES of shape [N] (or [N, 1]):
  UTF-8 text, as JSON strings or with the binary-data extension (header
  Inference-Header-Content-Length, input parameter `binary_data_size`, each review a 4-byte
  little-endian length then its bytes). Answer: `label` BYTES [N] and `probability_positive`
  FP64 [N].

Bad input gets a 4xx with `{"error": "<which review, and what was expected>"}`, never a 5xx: a
review that is not text (a number, null, a list: also in a batch of mixed types), one that is
empty or has no words once cleaned (only spaces, punctuation or line breaks: the model would
answer it with its prior, which says nothing about any review), one over --max-review-chars
(refused, not truncated: the TF-IDF model reads every word, and a cut review would get an answer
about text that was not sent), an empty batch or one over --max-reviews; a body over
--max-request-bytes gets a 413. The server keeps serving (tests/harness/badrequests.py is the
suite every case's server passes). The KServe plumbing at the end of this file is
mnist/serve.py's, copied (`make fix-copies`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

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
from starlette.exceptions import HTTPException
from uvicorn.importer import import_from_string

from imdb_sentiment import explain as occlusion
from imdb_sentiment.cli import fail, positive_int
from imdb_sentiment.model import (
    CALIBRATION_FILE,
    KERAS_FILE,
    SKLEARN_FILE,
    SentimentModel,
    label_of,
    standardize_text,
)

INPUT = "review"  # the one V2 input, as get_input_types() declares it
DEFAULT_MAX_REVIEWS = 256
# Refused above this many characters: a long IMDB review runs to a few thousand; a request of
# many reviews at this length meets --max-request-bytes (a 413) first.
DEFAULT_MAX_REVIEW_CHARS = 20_000
DEFAULT_MAX_EXPLAIN_REVIEWS = 8  # each costs one prediction per distinct word
MAX_TOP_WORDS = 100
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # 256 reviews of 2,000 characters are about 0.5 MiB
V1_EXAMPLE = '{"instances": ["<review text>", ...]}'
V2_EXAMPLE = (
    '{"inputs": [{"name": "review", "shape": [N], "datatype": "BYTES", '
    '"data": ["<review text>", ...]}]}'
)


class SentimentServer(kserve.Model):
    """The trained model (BiLSTM or TF-IDF, calibrated) behind KServe's V1 and V2 protocols."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        max_reviews: int = DEFAULT_MAX_REVIEWS,
        max_review_chars: int = DEFAULT_MAX_REVIEW_CHARS,
        max_explain_reviews: int = DEFAULT_MAX_EXPLAIN_REVIEWS,
        top_words: int = occlusion.DEFAULT_TOP_WORDS,
    ) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.max_reviews = max_reviews
        self.max_review_chars = max_review_chars
        self.max_explain_reviews = max_explain_reviews
        self.top_words = top_words
        self.model: SentimentModel | None = None

    def load(self) -> bool:
        found = [f for f in (KERAS_FILE, SKLEARN_FILE) if (self.model_dir / f).is_file()]
        if not found or not (self.model_dir / CALIBRATION_FILE).is_file():
            missing = CALIBRATION_FILE if found else f"{KERAS_FILE} or {SKLEARN_FILE}"
            raise FileNotFoundError(
                f"no {missing} in {self.model_dir}: --model-dir must hold what "
                "`python -m imdb_sentiment.train --model-dir DIR` writes (the model and "
                f"{CALIBRATION_FILE})"
            )
        self.model = SentimentModel.load(self.model_dir)
        # Trace the BiLSTM for small batches now, not on the first requests.
        for size in (1, 2, 3):
            self.score(["a warm-up review"] * size)
        self.ready = True
        return self.ready

    def score(self, reviews: list[str]) -> np.ndarray:
        """Checked reviews -> (N,) calibrated probabilities of "positive", float64."""
        probabilities = np.ascontiguousarray(self.model.probabilities(reviews), np.float64)
        return finite_output(probabilities, "the probabilities", "review text")

    def predict(self, payload: dict | InferRequest, headers: dict | None = None):
        if isinstance(payload, InferRequest):
            probabilities = self.score(self._v2_reviews(payload))
            labels = np.array([label_of(p) for p in probabilities], dtype=object)
            outputs = [
                InferOutput("label", [len(labels)], "BYTES", labels),
                InferOutput("probability_positive", [len(labels)], "FP64", probabilities),
            ]
            # V2 needs a string id: echo the caller's, or make one.
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, outputs)
        probabilities = self.score(self._v1_reviews(payload, self.max_reviews))
        return {
            "predictions": [
                {"label": label_of(p), "probability_positive": p} for p in probabilities.tolist()
            ]
        }

    async def explain(self, payload: dict, headers: dict | None = None) -> dict:
        reviews = self._v1_reviews(payload, self.max_explain_reviews)
        top = payload.get("top_words", self.top_words)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= MAX_TOP_WORDS:
            raise InvalidInput(
                f"top_words: expected a whole number from 1 to {MAX_TOP_WORDS}, got {top!r}"
            )
        # One prediction per distinct word: in a thread, so health checks and predictions go on.
        explanations = [
            await asyncio.to_thread(occlusion.explain, self.model, review, top)
            for review in reviews
        ]
        return {"explanations": explanations}

    def get_input_types(self) -> list[dict]:
        return [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probability_positive", "datatype": "FP64", "shape": [-1]},
        ]

    def _v1_reviews(self, payload: object, max_reviews: int) -> list[str]:
        return self._checked(v1_instances(payload), "instances", max_reviews)

    def _v2_reviews(self, request: InferRequest) -> list[str]:
        if [t.name for t in request.inputs] != [INPUT]:
            raise InvalidInput(
                f"expected exactly one input tensor, named {INPUT!r}, got "
                f"{[t.name for t in request.inputs]}: {V2_EXAMPLE}"
            )
        tensor = request.inputs[0]
        what = f"input {tensor.name!r}"
        if tensor.datatype != "BYTES":
            raise InvalidInput(
                f"{what}: expected datatype BYTES (UTF-8 review text), got {tensor.datatype}: "
                f"{V2_EXAMPLE}"
            )
        shape = list(tensor.shape)
        if len(shape) not in (1, 2) or shape[1:] not in ([], [1]):
            raise InvalidInput(f"{what}: expected shape [N] (or [N, 1]), got {shape}")
        values = input_array(tensor, what).ravel()
        texts = []
        for i, value in enumerate(values):
            try:
                texts.append(value.decode() if isinstance(value, bytes) else value)
            except UnicodeDecodeError as e:
                raise InvalidInput(
                    f"{what}[{i}]: expected UTF-8 text (a review), got other bytes"
                ) from e
        return self._checked(texts, what, self.max_reviews)

    def _checked(self, reviews: list, what: str, max_reviews: int) -> list[str]:
        return check_reviews(reviews, what, max_reviews, self.max_review_chars)


def check_reviews(reviews: list, what: str, max_reviews: int, max_chars: int) -> list[str]:
    """The reviews, or InvalidInput naming the first that is not review text within limits."""
    if not reviews:
        raise InvalidInput(f"{what}: expected a non-empty batch of reviews, got none: {V1_EXAMPLE}")
    if len(reviews) > max_reviews:
        raise InvalidInput(
            f"{what}: at most {max_reviews} reviews per request, got {len(reviews)}; "
            "split the batch"
        )
    for i, review in enumerate(reviews):
        if not isinstance(review, str):
            raise InvalidInput(
                f"{what}[{i}]: expected a review as text (a JSON string), got {json_type(review)}"
            )
        if len(review) > max_chars:
            raise InvalidInput(
                f"{what}[{i}]: a review of {len(review)} characters is over the limit of "
                f"{max_chars} (--max-review-chars); send a shorter review"
            )
        if not standardize_text(review).split():
            raise InvalidInput(
                f"{what}[{i}]: the review has no words (it is empty, or only spaces, "
                "punctuation or <br /> line breaks); expected review text"
            )
    return reviews


def json_type(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"a number ({value!r:.20})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- KServe plumbing: mnist/serve.py's, copied (`make fix-copies` rewrites it) ----------
#
# Module names it relies on: V1_EXAMPLE and V2_EXAMPLE (what a request looks like, for
# error messages), and DEFAULT_MAX_REQUEST_BYTES.


# Copied from mnist.serve.v1_instances
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


# Copied from mnist.serve.decode_v2
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


# Copied from mnist.serve.parse_json
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


# Copied from mnist.serve.scalar_parameters
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


# Copied from mnist.serve.decode_input
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


# Copied from mnist.serve.json_values
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


# Copied from mnist.serve.binary_values
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


# Copied from mnist.serve.input_array
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


# Copied from mnist.serve.finite_output
def finite_output(values: np.ndarray, what: str, expected: str) -> np.ndarray:
    """values, or InvalidInput when the model's output overflowed to NaN or infinity: inputs
    beyond what the model handles did that, so the answer is a 4xx, never a 200 with NaN."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InvalidInput(
            f"{what} came out as NaN or infinity: the input is beyond what the model handles; "
            f"expected {expected}"
        )
    return values


# Copied from mnist.serve.encode_v2
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


# Copied from mnist.serve.v2_infer_endpoint
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


# Copied from mnist.serve.RequestTooLarge
class RequestTooLarge(HTTPException):
    """A body over the limit. An HTTPException, so that FastAPI's body parsing re-raises it."""


# Copied from mnist.serve.LimitRequestBody
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


# Copied from mnist.serve.invalid_input_handler
async def invalid_input_handler(request: Request, exc: InvalidInput) -> JSONResponse:
    # KServe's own handler logs a whole traceback for every bad request; one line says it.
    logger.info("%s %s: 400 %s", request.method, request.url.path, exc)
    return JSONResponse({"error": str(exc)}, status_code=400)


# Copied from mnist.serve.http_error_handler
async def http_error_handler(_: Request, exc: HTTPException) -> JSONResponse:
    # The one error shape, {"error": ...}, for 404, 405, 413... rather than FastAPI's "detail".
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


# Copied from mnist.serve.request_validation_handler
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


# Copied from mnist.serve.ModelRestServer
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


# Copied from mnist.serve.serve_rest
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


# Copied from mnist.serve.add_server_arguments
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


# Copied from mnist.serve.load_or_exit
def load_or_exit(model: kserve.Model) -> None:
    """model.load(), or one line saying what to do and exit 1 when its files are not there."""
    try:
        model.load()
    except FileNotFoundError as e:
        fail(str(e))


# --- the command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    own = argparse.ArgumentParser(add_help=False)
    add_server_arguments(own, model_files=f"{KERAS_FILE} or {SKLEARN_FILE}, and {CALIBRATION_FILE}")
    own.add_argument(
        "--max-reviews",
        "--max_reviews",
        dest="max_reviews",
        type=positive_int,
        default=DEFAULT_MAX_REVIEWS,
        help="most reviews in one predict request (default: %(default)s)",
    )
    own.add_argument(
        "--max-review-chars",
        "--max_review_chars",
        dest="max_review_chars",
        type=positive_int,
        default=DEFAULT_MAX_REVIEW_CHARS,
        help="longest review, in characters; a longer one gets a 400, it is not cut "
        "(default: %(default)s)",
    )
    own.add_argument(
        "--max-explain-reviews",
        "--max_explain_reviews",
        dest="max_explain_reviews",
        type=positive_int,
        default=DEFAULT_MAX_EXPLAIN_REVIEWS,
        help="most reviews in one explain request (default: %(default)s)",
    )
    own.add_argument(
        "--top-words",
        "--top_words",
        dest="top_words",
        type=positive_int,
        default=occlusion.DEFAULT_TOP_WORDS,
        help="words an explanation lists when the request does not say (default: %(default)s)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m imdb_sentiment.serve",
        parents=[own, model_server.parser],
        description="Serve the review classifier and its word attributions with KServe.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = SentimentServer(
        args.model_name,
        args.model_dir,
        args.max_reviews,
        args.max_review_chars,
        args.max_explain_reviews,
        args.top_words,
    )
    load_or_exit(model)
    serve_rest(
        model, host=args.host, http_port=args.http_port, max_request_bytes=args.max_request_bytes
    )


if __name__ == "__main__":
    main()
