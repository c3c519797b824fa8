"""Serve CT-slice denoising with the stored SVD basis over KServe (V1 and Open Inference V2).

    python -m ct_scans.train --sample --model-dir /tmp/ct
    python -m ct_scans.serve --model_name ct-scans --model_dir /tmp/ct --host 127.0.0.1
    curl -d @ct_scans/sample/request.json localhost:8080/v2/models/ct-scans/infer

--model_dir holds the basis.npz that `python -m ct_scans.train` (or the SparkApplication)
writes: U (rows x cols, k), the singular values s and the slice shape. On a cluster KServe's
storage initializer puts that folder at /mnt/models, the default.

A slice is denoised as in `ct_scans.model.project`: as a column x of rows x cols pixels it becomes
U_r U_r^T x, where U_r holds the left singular vectors of the singular values that are at least
`percent` % of the largest (default 5, the case's --percent). Slices must have the scan's size.
Percent 0 keeps all k stored values: the answer is then x projected onto the whole basis, which
is x itself only for the slices of the scan the basis came from, and only at full rank.

Requests (1 to --max_slices slices, values in Hounsfield units):

* V1, POST /v1/models/ct-scans:predict, `{"instances": [slice, ...], "percent": 5}` where a
  slice is a rows x cols array of numbers; "percent" is optional. Answer:
  `{"predictions": [denoised slice, ...], "percent": 5.0, "kept": 18}`, kept being how many
  singular values were kept.
* V2, POST /v2/models/ct-scans/infer, one tensor named `slices`, FP32, FP64, INT16, INT32 or
  INT64 of shape [N, rows, cols] (a slice or a small volume), and the percentage either as a
  request parameter, `"parameters": {"percent": 5}`, or as a second input tensor named
  `percent` of shape [1] (for clients that only send tensors); not both. Answer: the output
  `denoised`, FP32 [N, rows, cols], and the response parameters `percent` and `kept`.
  For volumes of full-size slices use the binary data extension: the slices as raw
  little-endian bytes after the JSON (header Inference-Header-Content-Length, input parameter
  `binary_data_size`) and `"binary_data_output": true` for raw FP32 bytes back. KServe's JSON
  encoding of the answer costs about 1 s per 512 x 512 slice here; V1 and binary V2 about 0.2 s.

Bad input gets a 400 that says what was expected (a slice of another size than the basis's,
non-numbers, NaN or infinity, an empty or too large batch, a percentage outside [0, 100) or not
a number, a missing field, a body that is not JSON), and the server keeps serving. (NaN is not
JSON: in V1 KServe refuses such a body itself, "Unrecognized request format".) The command
line follows tests/fixtures/serving/echo_model.py: KServe's own flags plus --model_dir and
--host (0.0.0.0 in a pod, 127.0.0.1 in tests).
"""

from __future__ import annotations

import argparse
import math
import uuid
from pathlib import Path

import kserve
import numpy as np
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import InferOutput, InferRequest, InferResponse, model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput
from kserve.protocol.rest.server import RESTServer
from uvicorn.importer import import_from_string

from ct_scans import data, model
from ct_scans.train import BASIS_FILE

DEFAULT_PERCENT = 5.0  # train.py's --percent default
DEFAULT_MAX_SLICES = 32  # 32 slices of 512 x 512 as JSON are about 50 MB
V2_DATATYPES = ("FP32", "FP64", "INT16", "INT32", "INT64")
PERCENT_RULE = (
    "a number in [0, 100): singular values under that % of the largest are dropped "
    f"(default {DEFAULT_PERCENT:g})"
)
V1_EXAMPLE = '{"instances": [<rows x cols array of Hounsfield units>, ...], "percent": 5}'
V2_EXAMPLE = (
    '{"inputs": [{"name": "slices", "shape": [N, rows, cols], "datatype": "FP32", '
    '"data": [...]}], "parameters": {"percent": 5}}'
)


class CtDenoiser(kserve.Model):
    """The SVD basis from basis.npz behind KServe's V1 and V2 protocols."""

    def __init__(self, name: str, model_dir: Path, max_slices: int = DEFAULT_MAX_SLICES) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.max_slices = max_slices
        self.u: np.ndarray | None = None
        self.s: np.ndarray | None = None
        self.rows = self.cols = 0

    def load(self) -> bool:
        path = self.model_dir / BASIS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no basis at {path}: --model_dir must hold the basis.npz that "
                "`python -m ct_scans.train --model-dir DIR` writes"
            )
        with np.load(path) as stored:
            self.u = np.asarray(stored["u"], np.float32)
            self.s = np.asarray(stored["s"])
            self.rows, self.cols = (int(n) for n in stored["shape"])
        if self.u.shape != (self.rows * self.cols, len(self.s)):
            raise ValueError(
                f"{path}: u has shape {self.u.shape}, expected ({self.rows * self.cols}, "
                f"{len(self.s)}) for {self.rows}x{self.cols} slices and {len(self.s)} values"
            )
        self.ready = True
        return self.ready

    def denoise(self, slices: np.ndarray, percent: float) -> tuple[np.ndarray, int]:
        """(N, rows, cols) float32 slices -> the denoised slices and how many values were kept."""
        columns = data.to_matrix(slices)
        denoised = model.project(self.u, self.s, columns, percent)
        volume = data.to_volume(denoised, self.rows, self.cols)
        return volume.astype(np.float32, copy=False), model.kept(self.s, percent)

    def predict(self, payload: dict | InferRequest, headers: dict | None = None):
        if isinstance(payload, InferRequest):
            slices, percent = self._v2_request(payload)
            denoised, kept = self.denoise(slices, percent)
            output = InferOutput("denoised", list(denoised.shape), "FP32", data=denoised)
            return InferResponse(
                payload.id or str(uuid.uuid4()),  # V2 needs a string id: echo it, or make one
                self.name,
                [output],
                parameters={"percent": percent, "kept": kept},
                # The binary data extension, when asked for: raw FP32 bytes after the JSON.
                use_binary_outputs=payload.use_binary_outputs,
                requested_outputs=payload.request_outputs,
            )
        slices, percent = self._v1_request(payload)
        denoised, kept = self.denoise(slices, percent)
        return {"predictions": denoised.tolist(), "percent": percent, "kept": kept}

    def get_input_types(self) -> list[dict]:
        return [
            {"name": "slices", "datatype": "FP32", "shape": [-1, self.rows, self.cols]},
            {"name": "percent", "datatype": "FP64", "shape": [1]},
        ]

    def get_output_types(self) -> list[dict]:
        return [{"name": "denoised", "datatype": "FP32", "shape": [-1, self.rows, self.cols]}]

    def _v1_request(self, payload: object) -> tuple[np.ndarray, float]:
        if isinstance(payload, bytes | str):
            # KServe hands over the raw body when Content-Type is not JSON.
            raise InvalidInput(
                f"expected a JSON body (Content-Type: application/json): {V1_EXAMPLE}"
            )
        # KServe only checks that `instances` is a list when present, not that it is there.
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput(f"expected a JSON object with an 'instances' list: {V1_EXAMPLE}")
        instances = payload["instances"]
        self._check_count(len(instances), "instances")
        slices = [
            self._pixels(s, (self.rows, self.cols), f"instances[{i}]")
            for i, s in enumerate(instances)
        ]
        return np.stack(slices), check_percent(payload.get("percent", DEFAULT_PERCENT), "percent")

    def _v2_request(self, request: InferRequest) -> tuple[np.ndarray, float]:
        tensors = [t for t in request.inputs if t.name != "percent"]
        percents = [t for t in request.inputs if t.name == "percent"]
        if len(tensors) != 1 or len(percents) > 1:
            raise InvalidInput(
                "expected one input tensor of slices and, optionally, one named 'percent'; got "
                f"{[t.name for t in request.inputs]}: {V2_EXAMPLE}"
            )
        tensor = tensors[0]
        what = f"input {tensor.name!r}"
        if tensor.datatype not in V2_DATATYPES:
            raise InvalidInput(
                f"{what}: expected datatype {', '.join(V2_DATATYPES[:-1])} or "
                f"{V2_DATATYPES[-1]} (Hounsfield units), got {tensor.datatype}: {V2_EXAMPLE}"
            )
        shape = list(tensor.shape)
        if len(shape) != 3 or shape[1:] != [self.rows, self.cols]:
            raise InvalidInput(
                f"{what}: expected shape [N, {self.rows}, {self.cols}] (N slices of the "
                f"basis's {self.rows}x{self.cols} pixels), got {shape}"
            )
        self._check_count(shape[0], what)
        slices = self._pixels(_as_numpy(tensor), tuple(shape), what)

        parameters = request.parameters or {}
        if percents and "percent" in parameters:
            raise InvalidInput(
                "percent given twice: send it as the request parameter "
                '"parameters": {"percent": 5} or as the input tensor \'percent\', not both'
            )
        if percents:
            percent = percents[0]
            if percent.datatype not in V2_DATATYPES or list(percent.shape) != [1]:
                raise InvalidInput(
                    f"input 'percent': expected a numeric tensor of shape [1] holding "
                    f"{PERCENT_RULE}, got {percent.datatype} {list(percent.shape)}"
                )
            value = _as_numpy(percent).item()
            return slices, check_percent(value, "input 'percent'")
        return slices, check_percent(parameters.get("percent", DEFAULT_PERCENT), "percent")

    def _pixels(self, value: object, shape: tuple[int, ...], what: str) -> np.ndarray:
        """value as float32 pixels of `shape`, or InvalidInput saying what was expected."""
        size = f"{self.rows}x{self.cols}"
        try:
            pixels = np.asarray(value)
        except ValueError as e:  # ragged nesting
            raise InvalidInput(f"{what}: expected a {size} array of Hounsfield units: {e}") from e
        if pixels.dtype.kind not in "iuf":
            raise InvalidInput(
                f"{what}: expected numbers (Hounsfield units), got values of type {pixels.dtype}"
            )
        if pixels.shape != shape:
            raise InvalidInput(
                f"{what}: expected shape {list(shape)} (a slice of the basis's {size} "
                f"pixels), got {list(pixels.shape)}"
            )
        with np.errstate(over="ignore"):
            pixels = pixels.astype(np.float32)
        if not np.isfinite(pixels).all():
            raise InvalidInput(
                f"{what}: expected finite Hounsfield units, got NaN, infinity or a value "
                "beyond FP32's range"
            )
        return pixels

    def _check_count(self, count: int, what: str) -> None:
        if count < 1:
            raise InvalidInput(f"{what}: expected at least one slice, got {count}")
        if count > self.max_slices:
            raise InvalidInput(
                f"{what}: at most {self.max_slices} slices per request (--max_slices), got "
                f"{count}; split the volume"
            )


def check_percent(value: object, what: str) -> float:
    """value as a float in [0, 100), or InvalidInput saying what was expected."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{what}: expected {PERCENT_RULE}, got {value!r}")
    if not (math.isfinite(value) and 0 <= value < 100):
        raise InvalidInput(f"{what}: expected {PERCENT_RULE}, got {value}")
    return float(value)


def _as_numpy(tensor) -> np.ndarray:
    what = f"input {tensor.name!r}: data does not match {tensor.datatype} {list(tensor.shape)}"
    try:
        values = tensor.as_numpy()
    except (ValueError, TypeError, OverflowError) as e:
        # as_numpy raises when data does not fill the shape or does not fit the datatype.
        raise InvalidInput(f"{what}: {e}") from e
    # Filling an integer array, numpy truncates 1.5 to 1 without a word: refuse fractions.
    if (
        values.dtype.kind == "i"
        and isinstance(tensor.data, list)
        and not np.array_equal(np.asarray(tensor.data, np.float64).reshape(values.shape), values)
    ):
        raise InvalidInput(f"{what}: expected whole numbers, got fractions")
    return values


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


def serve_rest(model: kserve.Model, *, host: str, http_port: int) -> None:
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
    app = import_from_string(FASTAPI_APP_IMPORT_STRING)  # KServe's module-level FastAPI app
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    rest.run()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        parents=[model_server.parser], description="Serve CT-slice denoising with KServe."
    )
    parser.add_argument(
        "--model_dir", default="/mnt/models", help="folder with basis.npz (default: %(default)s)"
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="address to listen on; tests use 127.0.0.1 (default: %(default)s)",
    )
    parser.add_argument(
        "--max_slices",
        type=int,
        default=DEFAULT_MAX_SLICES,
        help="most slices in one request (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = CtDenoiser(args.model_name, Path(args.model_dir), args.max_slices)
    model.load()
    serve_rest(model, host=args.host, http_port=args.http_port)


if __name__ == "__main__":
    main()
