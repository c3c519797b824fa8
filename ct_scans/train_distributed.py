"""Compute the SVD basis of a CT scan on Spark: the book's dssvd(A, k, p, q), in PySpark.

    python -m ct_scans.train_distributed --sample --model-dir /tmp/ct      # local[2]
    spark-submit ct_scans/train_distributed.py --sample --model-dir /tmp/ct
    kubectl apply -f ct_scans/manifests/sparkapplication.yaml              # a driver, 2 executors

A readable diff of train.py: the same flags plus --partitions and --master, the same `name=value`
lines, and basis.npz and metrics.json written by train.py's own functions; each change is marked
`# train.py: ...`. The driver reads the scan as train.py does (a series is a few hundred MB at
most) and cuts the m x n matrix A (m pixels, n slices: tall and skinny) into --partitions blocks
of rows, one RDD record each. `distributed_randomized_svd` is `model.randomized_svd` step by step:

- Omega (n x (k + p)) is drawn on the driver from --seed exactly as randomized_svd draws it and
  broadcast; every block computes its rows of Y = A Omega.
- Y gets an orthonormal basis Q by a tall-skinny QR (TSQR): each block factors Y_i = Q_i R_i, the
  driver stacks the small R_i and factors them once more, [R_1; R_2; ...] = Q_s R, and Q's block i
  is Q_i Q_s[i]. It is as stable as one Householder QR of Y. Cholesky-QR (R from the Gram matrix
  Y^T Y, summed over the blocks, then Q = Y R^-1) costs the same passes but squares Y's condition
  number, and fails outright when Y is rank deficient (fewer independent slices than k + p).
- Each power iteration sums Z = A^T Q = sum_i A_i^T Q_i over the blocks, orthonormalises it on the
  driver (n x (k + p) is small), and computes Y = A Z block by block, then TSQR again.
- B = Q^T A = sum_i Q_i^T A_i ((k + p) x n) has its exact SVD on the driver, U_B s V^T, and
  U = Q U_B (m x k) is computed by block and collected in row order.

With the same seed the two compute the same subspaces, so s, the reconstruction and every metric
agree to rounding (ct_scans/tests/test_distributed.py measures it). The executors only compute,
with the small numpy functions below; the driver writes every file.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np
from pyspark import RDD, Broadcast, SparkContext
from pyspark.sql import SparkSession

# spark-submit runs this file as a script, so `ct_scans` imports only from the folder above it.
# The SparkApplication sets PYTHONPATH=/app for that (the harness maps /app to the repository
# root); this line makes a bare `spark-submit ct_scans/train_distributed.py` from a checkout work.
if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ct_scans import data, train  # noqa: E402
from ct_scans.cli import fail, output_dir, positive_int  # noqa: E402

DEFAULT_MASTER = "local[2]"  # two task slots, as the SparkApplication's two executors have


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Denoise a CT scan with a randomized SVD computed on Spark."
    )
    data.add_data_arguments(parser)  # --sample, --series-dir, --url, --sha256, --data-dir
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where basis.npz and metrics.json go, on the driver (default: model)",
    )
    train.add_svd_arguments(parser)  # --rank, --oversampling, --power-iterations, --percent, --seed
    parser.add_argument("--images", action="store_true", help="also save slice PNGs (default: off)")
    # train.py has no cluster: how A is spread over the executors, and which Spark runs it.
    parser.add_argument(
        "--partitions",
        type=positive_int,
        default=None,
        help="blocks of rows of A, one Spark task each (default: one per executor core)",
    )
    parser.add_argument(
        "--master",
        default=None,
        help=f"Spark master (default: spark-submit's; {DEFAULT_MASTER} when run with python)",
    )
    args = parser.parse_args(argv)
    train.check_scan_chosen(parser, args)
    return args


def spark_session(master: str | None) -> SparkSession:
    """spark-submit's session; with plain `python`, one on --master or local[2]."""
    builder = SparkSession.builder
    # Python workers run this interpreter (a venv's on a laptop) unless told otherwise; the
    # first python3 on PATH may lack numpy.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # spark-submit starts the JVM first and hands it over in PYSPARK_GATEWAY_PORT, with the master
    # the SparkApplication asked for; a master set here would override that one.
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master or DEFAULT_MASTER).appName("ct-scans-svd")
    return builder.getOrCreate()


def row_blocks(sc: SparkContext, a: np.ndarray, partitions: int) -> RDD:
    """A as (index, block of rows) records, one per partition, in row order."""
    blocks = np.array_split(a, min(partitions, a.shape[0]))
    return sc.parallelize(list(enumerate(blocks)), len(blocks))


# What the executors run. A record is (index, A_i, M_i): a block of A and that block's rows of
# the tall matrix being worked on (Y, then Q). A_i travels with it, so no step needs a join.


def _times(record: tuple, right: Broadcast) -> tuple:
    """(i, A_i, ...) -> (i, A_i, A_i @ right): this block's rows of A times a small matrix."""
    index, a_i = record[0], record[1]
    return index, a_i, a_i @ right.value


def _local_qr(record: tuple) -> tuple:
    """(i, A_i, Y_i) -> (i, A_i, Q_i, R_i) with Y_i = Q_i R_i."""
    index, a_i, y_i = record
    q_i, r_i = np.linalg.qr(y_i)
    return index, a_i, q_i, r_i


def _combine(record: tuple, parts: Broadcast) -> tuple:
    """(i, A_i, Q_i, R_i) -> (i, A_i, Q_i Q_s[i]): this block's rows of Y's orthonormal basis."""
    index, a_i, q_i, _ = record
    return index, a_i, q_i @ parts.value[index]


def _a_t_q(record: tuple) -> np.ndarray:
    _, a_i, q_i = record
    return a_i.T @ q_i


def _q_t_a(record: tuple) -> np.ndarray:
    _, a_i, q_i = record
    return q_i.T @ a_i


def _u_rows(record: tuple, u_small: Broadcast) -> tuple:
    index, _, q_i = record
    return index, q_i @ u_small.value


def tsqr(sc: SparkContext, y: RDD) -> tuple[RDD, RDD]:
    """(i, A_i, Y_i) records -> (i, A_i, Q_i) records whose Q_i form Y's orthonormal basis.

    Q is Y's reduced QR up to the sign of each column, which no later step depends on. Also
    returns the cached blocks the Q_i are computed from: unpersist them once Q is used up.
    """
    factored = y.map(_local_qr).cache()
    r = dict(factored.map(lambda record: (record[0], record[3])).collect())
    order = sorted(r)
    q_small, _ = np.linalg.qr(np.vstack([r[i] for i in order]))
    # R_i has min(rows of block i, k + p) rows: Q_s's rows split the same way.
    ends = np.cumsum([r[i].shape[0] for i in order])[:-1]
    parts = sc.broadcast(dict(zip(order, np.split(q_small, ends), strict=True)))
    return factored.map(functools.partial(_combine, parts=parts)), factored


def distributed_randomized_svd(
    sc: SparkContext, blocks: RDD, n: int, k: int, p: int = 10, q: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`model.randomized_svd` of the m x n matrix whose (index, rows) records are `blocks`.

    Returns U (m x k, rows in index order), s (k,) and Vt (k x n), on the driver.
    """
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and n={n}")
    width = min(k + p, n)
    # The same draw as model.randomized_svd for the same seed, so the two compute the same thing.
    omega = sc.broadcast(np.random.default_rng(seed).standard_normal((n, width)))
    basis, factored = tsqr(sc, blocks.map(functools.partial(_times, right=omega)))
    for _ in range(q):  # power iterations: each multiplies by A A^T, re-orthonormalised
        z, _ = np.linalg.qr(basis.map(_a_t_q).reduce(np.add))
        following = tsqr(sc, basis.map(functools.partial(_times, right=sc.broadcast(z))))
        factored.unpersist()  # the new blocks are factored and cached: the old ones can go
        basis, factored = following
    u_small, s, vt = np.linalg.svd(basis.map(_q_t_a).reduce(np.add), full_matrices=False)
    u_blocks = basis.map(functools.partial(_u_rows, u_small=sc.broadcast(u_small[:, :k])))
    u = np.vstack([u_i for _, u_i in sorted(u_blocks.collect(), key=lambda item: item[0])])
    factored.unpersist()
    return u, s[:k], vt[:k]


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    try:
        volume, truth = data.load_chosen(args)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --series-dir, --url and --data-dir, or use the phantom: --sample)")
    a = data.to_matrix(volume)
    print(f"scan {volume.shape} -> matrix {a.shape}", flush=True)
    k = min(args.rank, *a.shape)

    # train.py computes in its own process: here the session spark-submit or --master gives.
    owned = SparkSession.getActiveSession() is None  # never stop a session a caller made
    spark = spark_session(args.master)
    try:
        sc = spark.sparkContext
        blocks = row_blocks(sc, a, args.partitions or sc.defaultParallelism)
        print(f"spark master={sc.master} partitions={blocks.getNumPartitions()}", flush=True)
        start = time.perf_counter()
        # train.py: model.randomized_svd(a, k, args.oversampling, args.power_iterations, args.seed)
        u, s, vt = distributed_randomized_svd(
            sc, blocks, a.shape[1], k, args.oversampling, args.power_iterations, args.seed
        )
        seconds = time.perf_counter() - start
        partitions = blocks.getNumPartitions()
    finally:
        if owned:
            spark.stop()

    # From here on as train.py, on the driver alone: only it writes files.
    metrics, volumes = train.denoise_report(volume, truth, u, s, vt, args.percent, args.images)
    metrics["svd_seconds"] = seconds
    metrics["partitions"] = float(partitions)  # train.py: no partitions
    train.save(args.model_dir, u, s, volume.shape[1:], metrics)
    if args.images:
        train.save_images(args.model_dir, volume, truth, volumes)
    train.report(metrics)
    return metrics


if __name__ == "__main__":
    main()
