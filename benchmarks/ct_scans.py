"""ct_scans: exact, randomized and Spark SVD seconds as the scan grows, their agreement, and PSNR.

    python -m benchmarks ct_scans      # about 2 to 3 minutes on 2 cores

Volumes: head phantoms (`ct_scans.data.phantom(shape)` plus `data.noisy`, in Hounsfield units)
of SIZES: 48 slices at 64x64, 128x128, 256x256 and 512x512 (the matrix A has m = 4,096 to
262,144 rows, one per pixel, and n = 48 columns, one per slice), then 96 slices at 256x256 and
192 slices at 128x128, where n grows past k + p = 50 (with n = 48 the randomized SVD projects
onto all n columns: it reduces nothing). A is float32, as the case reads a scan.

Figures, at each size:

* seconds for the exact SVD (`np.linalg.svd(A, full_matrices=False)`), the randomized SVD
  (`model.randomized_svd(A, k=40, p=10, q=2)`, train.py's defaults) and the same on Spark
  (`train_distributed.distributed_randomized_svd`, local[2], 2 partitions), each read against
  the exact SVD at that size. A call whose first run takes under FAST_SECONDS is run REPEATS
  times and the median kept; a slower one runs once. Spark's seconds are the SVD call alone: one
  session serves every size, and its start (the JVM, then a warm-up SVD of a tiny matrix that
  starts the Python workers and their imports) is a figure of its own; cutting A into row blocks
  (`row_blocks`, once per size) is reported beside each. Every figure also gives each run and
  the fastest: on a shared machine the spread is wide.
* the agreement of the randomized and Spark SVDs with the exact one: the largest relative error
  over the LEADING = 10 largest singular values.

And on the case's own sample (the noisy phantom of data.PHANTOM_SHAPE, rounded to whole
Hounsfield units as `python -m ct_scans.train --sample` reads it back from DICOM): the PSNR gained
against the noisy input, and the SSIM, at each of the book's percentages of singular values
dropped (model.PERCENTAGES), with train.py's randomized SVD and `train.denoise_report`.

Spark runs with SPARK_LOCAL_IP=127.0.0.1, this interpreter as its Python workers, and a driver
heap of DRIVER_MEMORY, as the SparkApplication's driver has: with Spark's default 1 GiB the
local[2] JVM, which holds both executors' cached blocks, runs out of heap at 512x512x48.

And serving: the server as ct_scans/manifests/inferenceservice.yaml describes (through
tests.harness.serving on 127.0.0.1) with a basis of the phantom at each SERVING_SIZES shape
(k=40, the noisy scan's own randomized SVD, saved as train.py saves it), denoising new noisy
slices at 5 %: V1, V2 JSON and V2 with the binary-data extension (INT16 in, as DICOM stores
them; FP32 out with `binary_data_output`), the same three requests to a bare FastAPI endpoint
around the same `CtDenoiser.denoise` (benchmarks/_floor.py, the floor), and `denoise` in this
process, taking turns call by call (benchmarks/_serving.py): p50 latency per row and, per
protocol, the served p50 over the floor's.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks import _serving

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = (  # slices, rows, cols
    (48, 64, 64),
    (48, 128, 128),
    (48, 256, 256),
    (48, 512, 512),
    (96, 256, 256),
    (192, 128, 128),
)
K, P, Q, SEED = 40, 10, 2, 0  # train.py's defaults: rank, oversampling, power iterations
LEADING = 10  # singular values whose agreement with the exact SVD is reported
MASTER, PARTITIONS = "local[2]", 2  # as the SparkApplication: two executors of one core
DRIVER_MEMORY = "2g"  # the SparkApplication's driver `memory`; Spark's default 1g is too small
WARMUP_SHAPE = (64, 8)  # the matrix of Spark's warm-up SVD
REPEATS = 3
FAST_SECONDS = 4.0  # a call whose first run is quicker than this is run REPEATS times
METHODS = ("exact", "randomized", "spark")
# Serving: slice shape -> {batch: rounds}; full-size JSON bodies take a second each, so few.
SERVING_SIZES = {(64, 64): {1: 200, 32: 100}, (512, 512): {4: 10}}
SERVING_SECONDS = 120.0
SERVING_PERCENT = 5.0
PARAMETERS = f"k={K}, p={P}, q={Q}, seed={SEED}"


# --- timing and summaries ---------------------------------------------------------------------


def time_call(
    call: Callable[[], object],
    repeats: int = REPEATS,
    fast_seconds: float = FAST_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict, object]:
    """({"seconds": median, "runs": [...]}, the first run's result).

    One run; when it took under fast_seconds, repeats - 1 more, and the median of them all.
    """
    runs: list[float] = []
    result = None
    while not runs or (len(runs) < repeats and runs[0] < fast_seconds):
        before = clock()
        got = call()
        runs.append(clock() - before)
        result = got if len(runs) == 1 else result
    return {"seconds": statistics.median(runs), "runs": runs}, result


def max_relative_error(s: Sequence[float], reference: Sequence[float], leading: int) -> float:
    """max over the `leading` largest of |s_i - reference_i| / reference_i."""
    s, reference = np.asarray(s, np.float64), np.asarray(reference, np.float64)
    if len(s) < leading or len(reference) < leading:
        raise ValueError(f"need {leading} singular values, got {len(s)} and {len(reference)}")
    return float(np.max(np.abs(s[:leading] - reference[:leading]) / reference[:leading]))


def label(shape: Sequence[int]) -> str:
    """(48, 64, 64) -> '48x64x64': slices x rows x cols."""
    return "x".join(str(d) for d in shape)


@contextmanager
def spark_env(env: MutableMapping[str, str] = os.environ) -> Iterator[None]:
    """The environment a local Spark session needs here, restored afterwards.

    Loopback only; this interpreter as the Python workers, importing ct_scans from the
    repository; the driver heap and a quiet console (no UI, no progress bars) for spark-submit.
    """
    submit = f"--driver-memory {DRIVER_MEMORY} --conf spark.ui.enabled=false"
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    wanted = {
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYTHONPATH": pythonpath,
        "PYSPARK_SUBMIT_ARGS": f"{submit} --conf spark.ui.showConsoleProgress=false pyspark-shell",
    }
    before = {name: env.get(name) for name in wanted}
    env.update(wanted)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value


# --- the measurements -------------------------------------------------------------------------


def start_spark():
    """(session, {"session_seconds", "warmup_seconds"}): the one session every size shares.

    The warm-up is a distributed SVD of a tiny matrix: it starts the Python workers and their
    imports (numpy, ct_scans), which the first size would otherwise pay for.
    """
    from ct_scans import train_distributed

    before = time.perf_counter()
    spark = train_distributed.spark_session(MASTER)
    session_seconds = time.perf_counter() - before
    sc = spark.sparkContext
    tiny = np.random.default_rng(SEED).standard_normal(WARMUP_SHAPE)
    before = time.perf_counter()
    blocks = train_distributed.row_blocks(sc, tiny, PARTITIONS)
    train_distributed.distributed_randomized_svd(sc, blocks, tiny.shape[1], 2, 2, Q, SEED)
    warmup_seconds = time.perf_counter() - before
    return spark, {"session_seconds": session_seconds, "warmup_seconds": warmup_seconds}


def measure_size(shape: tuple[int, int, int], sc=None) -> dict:
    """Seconds and singular values of the three SVDs of the noisy phantom of this shape.

    Without a SparkContext only the exact and randomized SVDs run.
    """
    from ct_scans import data, model, train_distributed

    a = data.to_matrix(data.noisy(data.phantom(shape)))
    m, n = a.shape
    k = min(K, m, n)
    exact, (_, s_exact, _) = time_call(lambda: np.linalg.svd(a, full_matrices=False))
    randomized, (_, s_rand, _) = time_call(lambda: model.randomized_svd(a, k, P, Q, SEED))
    result = {
        "shape": tuple(shape),
        "m": m,
        "n": n,
        "exact": exact,
        "randomized": randomized,
        "error": {"randomized": max_relative_error(s_rand, s_exact, LEADING)},
    }
    if sc is not None:
        before = time.perf_counter()
        blocks = train_distributed.row_blocks(sc, a, PARTITIONS)
        parallelize_seconds = time.perf_counter() - before
        spark, (_, s_spark, _) = time_call(
            lambda: train_distributed.distributed_randomized_svd(sc, blocks, n, k, P, Q, SEED)
        )
        result["spark"] = spark | {"parallelize_seconds": parallelize_seconds}
        result["error"]["spark"] = max_relative_error(s_spark, s_exact, LEADING)
        result["error"]["spark_vs_randomized"] = max_relative_error(s_spark, s_rand, LEADING)
    return result


def quality(truth: np.ndarray, volume: np.ndarray) -> dict:
    """PSNR and SSIM at each of the book's percentages, as train.py computes them.

    {"noisy": {"psnr", "ssim"}, percent: {"psnr", "ssim", "kept", "psnr_exact_svd"}, ...};
    the randomized SVD has train.py's defaults, psnr_exact_svd uses every singular value of
    np.linalg.svd instead, for scale.
    """
    from ct_scans import data, model, train

    a = data.to_matrix(volume)
    k = min(K, *a.shape)
    u, s, vt = model.randomized_svd(a, k, P, Q, SEED)
    metrics, volumes = train.denoise_report(volume, truth, u, s, vt, model.PERCENTAGES[0])
    peak = float(np.ptp(truth))  # train.py's one data range for every figure
    u_x, s_x, vt_x = np.linalg.svd(a, full_matrices=False)
    rows, cols = volume.shape[1:]
    table: dict = {
        "noisy": {"psnr": metrics["psnr_noisy"], "ssim": metrics["ssim_noisy"]},
        "rank": k,
        "slices": volume.shape[0],
    }
    for percent in model.PERCENTAGES:
        exact = data.to_volume(model.reconstruct(u_x, s_x, vt_x, percent), rows, cols)
        table[percent] = {
            "psnr": metrics[train.metric_name("psnr", percent)],
            "ssim": model.ssim(truth, volumes[percent], peak),
            "kept": model.kept(s, percent),
            "psnr_exact_svd": model.psnr(truth, exact, peak),
        }
    return table


# --- the figures ------------------------------------------------------------------------------


def timing_figures(results: Sequence[dict]) -> Iterator[dict]:
    """Per size, each method's seconds against the exact SVD's at that size."""
    smallest = results[0]
    for result in results:
        size = label(result["shape"])
        exact_s = result["exact"]["seconds"]
        common = {
            "shape": size,
            "matrix": f"{result['m']} x {result['n']} float32",
            "m": result["m"],
            "n": result["n"],
        }
        for method in METHODS:
            if method not in result:
                continue
            own = result[method]
            repeats = len(own["runs"])
            figure = {
                "name": f"{method}_svd_seconds_{size}",
                "value": round(own["seconds"], 4),
                "unit": f"s (median of {repeats})" if repeats > 1 else "s (1 run)",
                "compared_with": f"exact_svd_seconds_{size} ({exact_s:.4f} s)",
                "times_exact": round(own["seconds"] / exact_s, 2),
                "min_seconds": round(min(own["runs"]), 4),
                "runs": [round(r, 4) for r in own["runs"]],
                **common,
            }
            if method == "exact":
                growth = result["m"] * result["n"] / (smallest["m"] * smallest["n"])
                figure["compared_with"] = (
                    f"exact_svd_seconds_{label(smallest['shape'])} "
                    f"({smallest['exact']['seconds']:.4f} s), the smallest size: this matrix has "
                    f"{growth:g} times its entries"
                )
                figure["entries_vs_smallest"] = growth
                figure["call"] = "np.linalg.svd(A, full_matrices=False)"
            elif method == "randomized":
                figure["call"] = f"model.randomized_svd(A, {PARAMETERS})"
            else:
                figure["call"] = f"distributed_randomized_svd({PARAMETERS}), {MASTER}"
                figure["partitions"] = PARTITIONS
                figure["row_blocks_seconds"] = round(own["parallelize_seconds"], 4)
                figure["excludes"] = "session start (own figure) and row_blocks"
            yield figure


def agreement_figures(results: Sequence[dict]) -> Iterator[dict]:
    """Per size, the randomized and Spark SVDs' largest relative error on the leading values."""
    for result in results:
        size = label(result["shape"])
        for method in ("randomized", "spark"):
            if method not in result["error"]:
                continue
            figure = {
                "name": f"{method}_leading{LEADING}_max_relative_error_{size}",
                "value": float(f"{result['error'][method]:.3g}"),
                "unit": f"max relative error over the {LEADING} largest singular values",
                "compared_with": f"np.linalg.svd at {size}, on float32 A (within about 4e-8 of a "
                "float64 SVD there)",
                "parameters": PARAMETERS,
                "m": result["m"],
                "n": result["n"],
            }
            if method == "spark" and "spark_vs_randomized" in result["error"]:
                figure["spark_vs_randomized"] = float(
                    f"{result['error']['spark_vs_randomized']:.3g}"
                )
            yield figure


def startup_figure(startup: dict, results: Sequence[dict]) -> dict:
    """The Spark session's start, against the Spark SVD at the smallest size."""
    smallest = results[0]
    total = startup["session_seconds"] + startup["warmup_seconds"]
    return {
        "name": "spark_session_start_seconds",
        "value": round(total, 2),
        "unit": "s (once, shared by every size)",
        "compared_with": f"spark_svd_seconds_{label(smallest['shape'])} "
        f"({smallest['spark']['seconds']:.4f} s)",
        "session_seconds": round(startup["session_seconds"], 2),
        "warmup_seconds": round(startup["warmup_seconds"], 2),
        "warmup": f"distributed_randomized_svd of a {WARMUP_SHAPE[0]} x {WARMUP_SHAPE[1]} matrix",
        "master": MASTER,
        "driver_memory": DRIVER_MEMORY,
    }


def quality_figures(table: dict) -> Iterator[dict]:
    """Per percentage, the PSNR gained over the noisy input and the SSIM, against the noisy's."""
    from ct_scans import model

    noisy = table["noisy"]
    common = {
        "svd": f"model.randomized_svd(k={table['rank']}, p={P}, q={Q}, seed={SEED})",
        "slices": table["slices"],
    }
    for percent in model.PERCENTAGES:
        own = table[percent]
        tag = f"{percent:g}".replace(".", "_")
        yield {
            "name": f"psnr_gain_drop_{tag}",
            "value": round(own["psnr"] - noisy["psnr"], 3),
            "unit": "dB",
            "compared_with": f"the noisy input (psnr {noisy['psnr']:.3f} dB)",
            "psnr": round(own["psnr"], 3),
            "kept": own["kept"],
            # + 0.0: no "-0.0" where the exact SVD keeps every value and rebuilds the input
            "gain_with_exact_svd": round(own["psnr_exact_svd"] - noisy["psnr"], 3) + 0.0,
            **common,
        }
        yield {
            "name": f"ssim_drop_{tag}",
            "value": round(own["ssim"], 4),
            "unit": "mean SSIM over the slices",
            "compared_with": f"the noisy input (ssim {noisy['ssim']:.4f})",
            "kept": own["kept"],
            **common,
        }


def serving_basis(shape: tuple[int, int], model_dir: Path) -> np.ndarray:
    """basis.npz of the noisy phantom of 48 slices of `shape`, as train.py saves it; returns
    fresh noisy slices of the same phantom (noise seed 2) to send."""
    from ct_scans import data, model, train

    truth = data.phantom((48, *shape))
    u, s, _ = model.randomized_svd(data.to_matrix(data.noisy(truth)), K, P, Q, SEED)
    train.save(model_dir, u, s, shape, {})
    return data.noisy(truth, seed=2)


def serving_requests(slices: np.ndarray) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The V1, V2 JSON and V2 binary bodies (raw FP32 answers asked for) for INT16 slices."""
    from tests.harness import badrequests

    tensor = {"name": "slices", "shape": list(slices.shape), "datatype": "INT16"}
    v2 = {"inputs": [tensor | {"data": slices.ravel().tolist()}]}
    v2["parameters"] = {"percent": SERVING_PERCENT}
    sent = _serving.bodies({"instances": slices.tolist(), "percent": SERVING_PERCENT}, v2)
    sent["v2_binary"] = badrequests.binary_request(v2, binary_output=True)
    return sent


def kept_checks(expected: int) -> dict:
    """protocol -> a check that an answer kept as many singular values as the model does."""

    def check(answer: dict) -> None:
        kept = answer["kept"] if "predictions" in answer else answer["parameters"]["kept"]
        if kept != expected:
            raise RuntimeError(f"the answer kept {kept} singular values, the model {expected}")

    return {protocol: check for protocol in _serving.PROTOCOLS}


def serving_rows(workdir: Path) -> dict[str, dict]:
    """{size label: {(row, batch): summary}} of the served, floor and in-process rows."""
    with _serving.one_thread():
        return {
            label(shape): serving_size(shape, batches, workdir)
            for shape, batches in SERVING_SIZES.items()
        }


def serving_size(shape: tuple[int, int], batches: dict[int, int], workdir: Path) -> dict:
    """{(row, batch): summary} at one slice size."""
    import httpx

    from benchmarks.mnist_serving import summarize
    from ct_scans.serve import CtDenoiser
    from tests.harness.serving import serve

    manifest = REPO_ROOT / "ct_scans" / "manifests" / "inferenceservice.yaml"
    size = label(shape)
    model_dir = workdir / f"basis-{size}"
    noisy = serving_basis(shape, model_dir)
    served = CtDenoiser("ct-scans", model_dir)
    served.load()
    stats: dict = {}
    print(f"ct_scans: serving {size} slices ...", file=sys.stderr, flush=True)
    with (
        serve(manifest, workdir=workdir, model_dir=model_dir, timeout=300) as server,
        _serving.floor("ct_scans", model_dir, workdir) as floor_url,
        httpx.Client(base_url=server.url, timeout=300) as served_client,
        httpx.Client(base_url=floor_url, timeout=300) as floor_client,
    ):
        for batch, rounds in batches.items():
            slices = np.rint(noisy[:batch]).astype(np.int16)  # as a DICOM series holds them
            sent = serving_requests(slices)
            parsed = slices.astype(np.float32)  # what the server hands the model
            checks = kept_checks(served.denoise(parsed, SERVING_PERCENT)[1])
            calls = {"denoise": lambda s=parsed, m=served: m.denoise(s, SERVING_PERCENT)}
            calls |= _serving.endpoint_calls("floor_", floor_client, "ct-scans", sent, checks)
            calls |= _serving.endpoint_calls("", served_client, "ct-scans", sent, checks)
            print(
                f"ct_scans: {len(calls)} rows taking turns, {size} batch {batch} ...",
                file=sys.stderr,
                flush=True,
            )
            timed = _serving.measure_alternating(
                calls, rounds, warmup=2, max_seconds=SERVING_SECONDS
            )
            for row, latencies in timed.items():
                stats[row, batch] = summarize(latencies, sum(latencies))
    return stats


def serving_figures(results: dict[str, dict]) -> Iterator[dict]:
    """Per size, batch and row, the p50 latency against the floor (served rows) or the model
    alone (the floors); then per protocol the served p50 over the floor's."""
    against = {"floor_v1": "denoise", "floor_v2": "denoise", "floor_v2_binary": "denoise"}
    against |= {"v1": "floor_v1", "v2": "floor_v2", "v2_binary": "floor_v2_binary"}
    for size, stats in results.items():
        for batch in sorted({b for _, b in stats}):
            for row, other_row in against.items():
                own, other = stats[row, batch], stats[other_row, batch]
                yield {
                    "name": f"{row}_{size}_batch{batch}_p50_ms",
                    "value": round(own["p50_ms"], 2),
                    "unit": "ms",
                    "compared_with": f"{other_row}_{size}_batch{batch}_p50_ms "
                    f"({other['p50_ms']:.2f} ms)",
                    "times_against": round(own["p50_ms"] / other["p50_ms"], 2),
                    "p99_ms": round(own["p99_ms"], 2),
                    "requests": own["requests"],
                    "slices_per_second": round(own["requests_per_second"] * batch, 1),
                }
            yield from _serving.ratio_figures(stats, batch, "denoise", tag=f"{size}_")


def run() -> Iterator[dict]:
    from ct_scans import data

    truth = data.phantom()
    volume = np.rint(data.noisy(truth))  # what `--sample` reads back from its int16 DICOM
    print(f"ct_scans: quality on the {label(data.PHANTOM_SHAPE)} phantom ...", file=sys.stderr)
    yield from quality_figures(quality(truth, volume))

    results = []
    with spark_env():
        print(f"ct_scans: starting Spark ({MASTER}) ...", file=sys.stderr, flush=True)
        spark, startup = start_spark()
        try:
            for shape in SIZES:
                print(f"ct_scans: SVDs at {label(shape)} ...", file=sys.stderr, flush=True)
                results.append(measure_size(shape, spark.sparkContext))
        finally:
            spark.stop()
    yield startup_figure(startup, results)
    yield from timing_figures(results)
    yield from agreement_figures(results)

    with tempfile.TemporaryDirectory(prefix="bench-ct-serving-") as tmp:
        yield from serving_figures(serving_rows(Path(tmp)))
