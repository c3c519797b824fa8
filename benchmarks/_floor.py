"""The floor of the serving benchmarks: a bare FastAPI endpoint around the same model.

    python -m benchmarks._floor CASE --model-dir DIR --port PORT
    # CASE: mnist, income_census, ct_scans, imdb_sentiment, recommender

What any server must do for a request, and nothing more: read the body, parse it with orjson
(for the V2 binary-data extension, np.frombuffer after the JSON), build one array or frame (JSON
numbers: np.asarray, then astype, the faster of the two ways numpy offers; text: the strings,
binary BYTES decoded as UTF-8), call the model exactly as the case's KServe server does
(`MnistModel.classify`, `IncomeModel.classify`, `CtDenoiser.denoise`,
`SentimentModel.probabilities`, `RecommenderServer.recommend`), and write the same answer with
orjson, under the same uvicorn. No validation, no KServe. What the served figures take beyond this one is what
KServe and the case's checks cost; the serving benchmarks print both, from one run.

Routes: POST /v1/models/<name>:predict and /v2/models/<name>/infer (JSON, or the binary-data
extension when the Inference-Header-Content-Length header is there), GET /ready.
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

HEADER = "inference-header-content-length"


def v2_request(body: bytes, headers) -> tuple[dict[str, tuple[list[int], object]], dict]:
    """({name: (shape, values)}, parameters) of a V2 request; binary numbers by np.frombuffer."""
    length = headers.get(HEADER)
    if length is None:
        head = orjson.loads(body)
        inputs = {t["name"]: (t["shape"], t["data"]) for t in head["inputs"]}
        return inputs, head.get("parameters") or {}
    head, offset, inputs = orjson.loads(body[: int(length)]), int(length), {}
    for tensor in head["inputs"]:
        size = tensor["parameters"]["binary_data_size"]
        chunk = body[offset : offset + size]
        offset += size
        if tensor["datatype"] == "BYTES":
            items, at = [], 0
            while at < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, at)
                items.append(chunk[at + 4 : at + 4 + n])
                at += 4 + n
            inputs[tensor["name"]] = (tensor["shape"], items)
        else:
            dtype = {"UINT8": "<u1", "INT16": "<i2", "INT64": "<i8", "FP32": "<f4", "FP64": "<f8"}
            values = np.frombuffer(chunk, dtype[tensor["datatype"]])
            inputs[tensor["name"]] = (tensor["shape"], values)
    return inputs, head.get("parameters") or {}


def data(values: np.ndarray) -> np.ndarray | list:
    """Numbers as the array (orjson writes it), text as a list."""
    return np.ravel(values) if values.dtype.kind in "biuf" else np.ravel(values).tolist()


def v2_answer(
    name: str, outputs: list[tuple[str, str, np.ndarray]], binary: bool = False, **extra
) -> Response:
    """The V2 answer; with `binary` (numeric outputs only), raw bytes after the JSON."""
    entries, raws = [], []
    for output_name, datatype, values in outputs:
        entry = {"name": output_name, "datatype": datatype, "shape": list(values.shape)}
        if binary:
            raws.append(np.ascontiguousarray(values).tobytes())
            entry["parameters"] = {"binary_data_size": len(raws[-1])}
        else:
            entry["data"] = data(values)
        entries.append(entry)
    head = orjson.dumps(
        {"model_name": name, "id": "floor", "outputs": entries, **extra},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if binary:
        return Response(
            head + b"".join(raws),
            media_type="application/octet-stream",
            headers={HEADER: str(len(head))},
        )
    return Response(head, media_type="application/json")


def v1_answer(body: dict) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


def mnist_app(model_dir: Path) -> FastAPI:
    from mnist.serve import MnistModel

    model = MnistModel("mnist", model_dir)
    model.load()
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def v1(name: str, request: Request) -> Response:
        images = np.asarray(orjson.loads(await request.body())["instances"]).astype(np.float32)
        probabilities = model.classify(images)
        digits = probabilities.argmax(axis=1).tolist()
        return v1_answer(
            {
                "predictions": [
                    {"digit": d, "probabilities": p}
                    for d, p in zip(digits, probabilities, strict=True)
                ]
            }
        )

    @app.post("/v2/models/{name}/infer")
    async def v2(name: str, request: Request) -> Response:
        shape, values = v2_request(await request.body(), request.headers)[0]["image"]
        probabilities = model.classify(np.asarray(values).astype(np.float32).reshape(shape))
        outputs = [
            ("digit", "INT64", probabilities.argmax(axis=1)),
            ("probabilities", "FP32", probabilities),
        ]
        return v2_answer(name, outputs)

    return app


def income_app(model_dir: Path) -> FastAPI:
    import pandas as pd

    from income_census.explain import CLASS_NAMES
    from income_census.model import FEATURES
    from income_census.serve import IncomeModel

    model = IncomeModel("income", model_dir)
    model.load()
    app = FastAPI()

    def answer(probabilities: np.ndarray) -> tuple[list[int], list[str]]:
        classes = probabilities.argmax(axis=1).tolist()
        return classes, [CLASS_NAMES[c] for c in classes]

    @app.post("/v1/models/{name}:predict")
    async def v1(name: str, request: Request) -> Response:
        rows = orjson.loads(await request.body())["instances"]  # rows by column name
        probabilities = model.classify(pd.DataFrame(rows, columns=list(FEATURES)))
        classes, labels = answer(probabilities)
        predictions = [
            {"class": c, "label": label, "probabilities": p}
            for c, label, p in zip(classes, labels, probabilities, strict=True)
        ]
        return v1_answer({"predictions": predictions})

    @app.post("/v2/models/{name}/infer")
    async def v2(name: str, request: Request) -> Response:
        inputs, _ = v2_request(await request.body(), request.headers)  # a tensor per column
        columns = {
            c: [v.decode() if isinstance(v, bytes) else v for v in inputs[c][1]] for c in FEATURES
        }
        probabilities = model.classify(pd.DataFrame(columns))
        classes, labels = answer(probabilities)
        outputs = [
            ("class", "INT64", np.asarray(classes)),
            ("label", "BYTES", np.asarray(labels)),
            ("probabilities", "FP64", probabilities),
        ]
        return v2_answer(name, outputs)

    return app


def ct_app(model_dir: Path) -> FastAPI:
    from ct_scans.serve import DEFAULT_PERCENT, CtDenoiser

    model = CtDenoiser("ct-scans", model_dir)
    model.load()
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def v1(name: str, request: Request) -> Response:
        body = orjson.loads(await request.body())
        percent = body.get("percent", DEFAULT_PERCENT)
        slices = np.asarray(body["instances"]).astype(np.float32)
        denoised, kept = model.denoise(slices, percent)
        return v1_answer({"predictions": denoised, "percent": percent, "kept": kept})

    @app.post("/v2/models/{name}/infer")
    async def v2(name: str, request: Request) -> Response:
        inputs, request_parameters = v2_request(await request.body(), request.headers)
        shape, values = inputs["slices"]
        slices = np.asarray(values).astype(np.float32).reshape(shape)
        denoised, kept = model.denoise(slices, DEFAULT_PERCENT)
        parameters = {"percent": DEFAULT_PERCENT, "kept": kept}
        binary = bool(request_parameters.get("binary_data_output"))
        return v2_answer(name, [("denoised", "FP32", denoised)], binary, parameters=parameters)

    return app


def imdb_app(model_dir: Path) -> FastAPI:
    from imdb_sentiment.model import SentimentModel, label_of

    model = SentimentModel.load(model_dir)
    for size in (1, 2, 3):  # the server's warm-up: the BiLSTM traced for small batches
        model.probabilities(["a warm-up review"] * size)
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def v1(name: str, request: Request) -> Response:
        reviews = orjson.loads(await request.body())["instances"]
        probabilities = model.probabilities(reviews).tolist()
        predictions = [{"label": label_of(p), "probability_positive": p} for p in probabilities]
        return v1_answer({"predictions": predictions})

    @app.post("/v2/models/{name}/infer")
    async def v2(name: str, request: Request) -> Response:
        _, values = v2_request(await request.body(), request.headers)[0]["review"]
        reviews = [v.decode() if isinstance(v, bytes) else v for v in values]
        probabilities = model.probabilities(reviews)
        labels = np.asarray([label_of(p) for p in probabilities.tolist()])
        outputs = [("label", "BYTES", labels), ("probability_positive", "FP64", probabilities)]
        return v2_answer(name, outputs)

    return app


def recommender_app(model_dir: Path) -> FastAPI:
    from recommender.serve import RecommenderServer

    model = RecommenderServer("recommender", model_dir)
    model.load()
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def v1(name: str, request: Request) -> Response:
        instances = orjson.loads(await request.body())["instances"]
        customers = [i["customer"] for i in instances]
        ns = [i.get("n", model.top_n) for i in instances]
        answers = model.recommend(customers, ns)
        return v1_answer({"predictions": answers, "model_version": model.version})

    @app.post("/v2/models/{name}/infer")
    async def v2(name: str, request: Request) -> Response:
        inputs, _ = v2_request(await request.body(), request.headers)
        customers = [c.decode() if isinstance(c, bytes) else c for c in inputs["customer"][1]]
        n = int(np.ravel(inputs["n"][1])[0]) if "n" in inputs else model.top_n
        answers = model.recommend(customers, [n] * len(customers))
        products = np.full((len(answers), n), "", dtype=object)  # rows padded as the server's
        scores = np.zeros((len(answers), n))
        for row, found in enumerate(answers):
            products[row, : len(found["products"])] = found["products"]
            scores[row, : len(found["scores"])] = found["scores"]
        outputs = [
            ("products", "BYTES", products),
            ("scores", "FP64", scores),
            ("count", "INT64", np.array([len(a["products"]) for a in answers])),
            ("fallback", "BOOL", np.array([a["fallback"] for a in answers])),
        ]
        return v2_answer(name, outputs, model_version=model.version)

    return app


APPS = {
    "mnist": mnist_app,
    "income_census": income_app,
    "ct_scans": ct_app,
    "imdb_sentiment": imdb_app,
    "recommender": recommender_app,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._floor", description=__doc__)
    parser.add_argument("case", choices=sorted(APPS))
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    app = APPS[args.case](args.model_dir)
    app.get("/ready")(lambda: {"ready": True})
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
