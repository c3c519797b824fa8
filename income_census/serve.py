"""Serve the income classifier and its anchor explanations with KServe (V1 and Open Inference V2).

    python -m income_census.serve --model_name income --model_dir /tmp/income --host 127.0.0.1
    curl -d @income_census/sample/request.json localhost:8080/v1/models/income:predict
    curl -d @income_census/sample/request.json localhost:8080/v1/models/income:explain

--model_dir holds what `python -m income_census.train` writes: model.joblib (the whole sklearn
Pipeline, so requests carry raw rows) and background.csv (the explainer's sampling pool). On a
cluster KServe's storage initializer puts the model folder at /mnt/models, the default.

Requests (1 to --max_rows rows; income_census/rows.py has the rules for a row):

* V1 predict, POST /v1/models/income:predict, `{"instances": [row, ...]}` where a row is an
  object keyed by column name or a list in the book's order (categories by name or by the
  book's integer code, e.g. `[39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]`). Answer:
  `{"predictions": [{"class": 0, "label": "<=50K", "probabilities": [0.93, 0.07]}, ...]}`.
* V1 explain, POST /v1/models/income:explain, the same body with at most --max_explain_rows
  rows, and optionally `"threshold"` (the precision an anchor must reach, default 0.95). Answer:
  `{"explanations": [{"label", "anchor": ["marital-status = Separated", ...], "precision",
  "coverage", ...}]}`. An anchor takes about 1 to 15 s a row here.
* V2 infer, POST /v2/models/income/infer: one tensor per column, named as the columns, shape
  [N] (numbers as FP32/FP64/INT32/INT64, categories as BYTES), or a single INT64/FP64 tensor of
  shape [N, 12] holding the book's positional rows. Answer: `class` INT64 [N], `label` BYTES [N]
  and `probabilities` FP64 [N, 2].

Bad input gets a 400 saying which row and column is wrong and what was expected, and the server
keeps serving. The command line follows tests/fixtures/serving/echo_model.py: KServe's own flags
plus --model_dir and --host (0.0.0.0 in a pod, 127.0.0.1 in tests).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path

import joblib
import kserve
import numpy as np
import pandas as pd
from kserve import InferOutput, InferRequest, InferResponse, model_server
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InvalidInput
from kserve.protocol.rest.server import RESTServer

from income_census import rows as rowcheck
from income_census.explain import CLASS_NAMES, DEFAULT_THRESHOLD, Explainer
from income_census.model import FEATURES, NUMERIC
from income_census.train import BACKGROUND_FILE, MODEL_FILE

DEFAULT_MAX_EXPLAIN_ROWS = 5
V1_EXAMPLE = f'{{"instances": [row, ...]}} where a row is {rowcheck.EXAMPLE}'
V2_EXAMPLE = (
    '{"inputs": [{"name": "age", "shape": [N], "datatype": "FP64", "data": [...]}, '
    '{"name": "workclass", "shape": [N], "datatype": "BYTES", "data": [...]}, ...one per column]}'
    ' or {"inputs": [{"name": "rows", "shape": [N, 12], "datatype": "INT64", "data": [...]}]}'
)


class IncomeModel(kserve.Model):
    """The Pipeline from model.joblib behind KServe's V1 (predict, explain) and V2 protocols."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        max_rows: int = rowcheck.DEFAULT_MAX_ROWS,
        max_explain_rows: int = DEFAULT_MAX_EXPLAIN_ROWS,
    ) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.max_rows = max_rows
        self.max_explain_rows = max_explain_rows
        self.model = None
        self.explainer: Explainer | None = None

    def load(self) -> bool:
        path = self.model_dir / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no model at {path}: --model_dir must hold the model.joblib that "
                "`python -m income_census.train --model-dir DIR` writes"
            )
        self.model = joblib.load(path)
        # One request is a few rows: threads cost more than they save (and anchors call it often).
        self.model.set_params(classifier__n_jobs=1)
        background = pd.read_csv(self.model_dir / BACKGROUND_FILE, keep_default_na=False)
        self.explainer = Explainer(self.model, background)
        self.ready = True
        return self.ready

    def classify(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows -> (N, 2) probabilities of <=50K and >50K."""
        return np.asarray(self.model.predict_proba(frame), np.float64)

    def predict(self, payload: dict | InferRequest, headers: dict | None = None):
        if isinstance(payload, InferRequest):
            probabilities = self.classify(self._v2_rows(payload))
            classes = probabilities.argmax(axis=1)
            outputs = [
                InferOutput("class", [len(classes)], "INT64", data=classes.tolist()),
                InferOutput(
                    "label", [len(classes)], "BYTES", data=[CLASS_NAMES[c] for c in classes]
                ),
                InferOutput(
                    "probabilities",
                    list(probabilities.shape),
                    "FP64",
                    data=probabilities.ravel().tolist(),
                ),
            ]
            # V2 needs a string id: echo the caller's, or make one.
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, outputs)
        probabilities = self.classify(self._v1_rows(payload, self.max_rows))
        return {"predictions": [_prediction(p) for p in probabilities]}

    async def explain(self, payload: dict, headers: dict | None = None) -> dict:
        frame = self._v1_rows(payload, self.max_explain_rows)
        threshold = payload.get("threshold", DEFAULT_THRESHOLD)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise InvalidInput(f"threshold: expected a number in (0, 1), got {threshold!r}")
        if not 0 < threshold < 1:
            raise InvalidInput(f"threshold: expected a number in (0, 1), got {threshold}")
        # Anchors take seconds: search in a thread so health checks and predictions go on.
        explanations = [
            await asyncio.to_thread(self.explainer.explain, frame.iloc[[i]], threshold)
            for i in range(len(frame))
        ]
        return {"explanations": explanations}

    def get_input_types(self) -> list[dict]:
        return [
            {"name": c, "datatype": "FP64" if c in NUMERIC else "BYTES", "shape": [-1]}
            for c in FEATURES
        ]

    def get_output_types(self) -> list[dict]:
        return [
            {"name": "class", "datatype": "INT64", "shape": [-1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
        ]

    def _v1_rows(self, payload: object, max_rows: int) -> pd.DataFrame:
        if isinstance(payload, bytes | str):
            # KServe hands over the raw body when Content-Type is not JSON.
            raise InvalidInput(
                f"expected a JSON body (Content-Type: application/json): {V1_EXAMPLE}"
            )
        # KServe only checks that `instances` is a list when present, not that it is there.
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput(f"expected a JSON object with an 'instances' list: {V1_EXAMPLE}")
        try:
            return rowcheck.parse_rows(payload["instances"], "instances", max_rows)
        except rowcheck.BadRows as e:
            raise InvalidInput(str(e)) from e

    def _v2_rows(self, request: InferRequest) -> pd.DataFrame:
        tensors = {t.name: t for t in request.inputs}
        if len(request.inputs) == 1 and request.inputs[0].name not in FEATURES:
            return self._v2_positional(request.inputs[0])
        unknown = sorted(set(tensors) - set(FEATURES) - rowcheck.IGNORED_COLUMNS)
        missing = [c for c in FEATURES if c not in tensors]
        if unknown or missing:
            raise InvalidInput(
                f"expected one input per column {list(FEATURES)}; "
                + (f"unknown: {unknown} " if unknown else "")
                + (f"missing: {missing}" if missing else "")
                + f": {V2_EXAMPLE}"
            )
        columns, length = {}, None
        for name in FEATURES:
            tensor = tensors[name]
            if len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ([], [1]):
                raise InvalidInput(f"input {name!r}: expected shape [N], got {tensor.shape}")
            if length is not None and tensor.shape[0] != length:
                raise InvalidInput(
                    f"input {name!r}: {tensor.shape[0]} rows, but the other inputs have {length}"
                )
            length = tensor.shape[0]
            columns[name] = _tensor_values(tensor)
        rows = [
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        ]
        return self._checked(rows, "inputs")

    def _v2_positional(self, tensor) -> pd.DataFrame:
        what = f"input {tensor.name!r}"
        if tensor.datatype not in ("INT32", "INT64", "FP32", "FP64") or len(tensor.shape) != 2:
            raise InvalidInput(
                f"{what}: expected INT64 or FP64 of shape [N, {len(FEATURES)}] (the book's "
                f"positional rows), got {tensor.datatype} {tensor.shape}: {V2_EXAMPLE}"
            )
        values, width = _tensor_values(tensor), tensor.shape[1]
        rows = [values[i : i + width] for i in range(0, len(values), width)]
        return self._checked(rows, what)

    def _checked(self, rows: list, what: str) -> pd.DataFrame:
        try:
            return rowcheck.parse_rows(rows, what, self.max_rows)
        except rowcheck.BadRows as e:
            raise InvalidInput(str(e)) from e


def _tensor_values(tensor) -> list:
    """A tensor's values, flattened, as a JSON client would send them (str, int or float)."""
    try:
        values = tensor.as_numpy()
    except (ValueError, TypeError, OverflowError) as e:
        # as_numpy raises when data does not fill the shape or does not fit the datatype.
        raise InvalidInput(
            f"input {tensor.name!r}: data does not match {tensor.datatype} {tensor.shape}: {e}"
        ) from e
    if tensor.datatype == "BYTES":
        return [v.decode() if isinstance(v, bytes) else v for v in values.ravel()]
    return [_native(v) for v in values.ravel()]


def _native(value: object) -> object:
    """A numpy scalar as a plain int (when integral) or float, as a JSON client would send it."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _prediction(probabilities: np.ndarray) -> dict:
    label = int(probabilities.argmax())
    return {
        "class": label,
        "label": CLASS_NAMES[label],
        "probabilities": [float(p) for p in probabilities],
    }


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
    rest.run()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        parents=[model_server.parser], description="Serve the income classifier with KServe."
    )
    parser.add_argument(
        "--model_dir",
        default="/mnt/models",
        help="folder with model.joblib and background.csv (default: %(default)s)",
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",
        help="address to listen on; tests use 127.0.0.1 (default: %(default)s)",
    )
    parser.add_argument(
        "--max_rows",
        type=int,
        default=rowcheck.DEFAULT_MAX_ROWS,
        help="most rows in one predict request (default: %(default)s)",
    )
    parser.add_argument(
        "--max_explain_rows",
        type=int,
        default=DEFAULT_MAX_EXPLAIN_ROWS,
        help="most rows in one explain request (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    model = IncomeModel(args.model_name, Path(args.model_dir), args.max_rows, args.max_explain_rows)
    model.load()
    serve_rest(model, host=args.host, http_port=args.http_port)


if __name__ == "__main__":
    main()
