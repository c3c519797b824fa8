"""ct_scans.train_distributed: the randomized SVD on Spark is NumPy's, and the SparkApplication runs.

The algorithm tests share one local Spark session (local[2], as the SparkApplication's two
executors); the harness runs manifests/sparkapplication.yaml once, as spark-submit in local mode,
with case.toml's smoke arguments (the noisy phantom), and its metrics are compared with
one-process train.py's.
A JVM takes seconds to start, so the module starts two: the session and spark-submit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pyspark import SparkContext
from pyspark.sql import SparkSession

from ct_scans import data, model, train, train_distributed
from tests.harness import cases, jobs, manifests

pytestmark = pytest.mark.slow  # about 30 s here, two JVM starts of it, more on a busy machine

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE = cases.load_case(REPO_ROOT / "ct_scans")
MANIFEST = CASE.path / "manifests" / "sparkapplication.yaml"
CLUSTER = manifests.load(MANIFEST)[0]  # the SparkApplication as a cluster gets it
JOB_TIMEOUT = 300  # seconds; only stops a hang

# k = 10, p = 10, q = 2 on the noisy phantom (4096 x 48), measured here: the first 5 singular
# values are within 7.3e-7 (relative) of np.linalg.svd's, all 10 within 2.2e-4 (the spectrum's
# tail is flat noise, so the last of the k converge slowest), on Spark and in model.randomized_svd
# alike. Between those two, with the same seed, only rounding differs: 2e-15 on s, 2e-13 on U.
K, P, Q = 10, 10, 2
LEADING, LEADING_RTOL, ALL_RTOL = 5, 1e-6, 1e-3
SAME_RTOL, SAME_ATOL = 1e-9, 1e-10
PSNR_CLOSE = 1e-3  # dB between the SparkApplication and train.py on the same flags


@pytest.fixture(scope="module")
def sc() -> SparkContext:
    """A local[2] session, stopped at the end of the module."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # it binds a non-loopback address otherwise
        # The Python workers: this interpreter, importing ct_scans from the repository.
        env.setenv("PYSPARK_PYTHON", sys.executable)
        env.setenv("PYTHONPATH", str(REPO_ROOT), prepend=":")
        session = (
            SparkSession.builder.master("local[2]")
            .appName("ct-scans-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        yield session.sparkContext
        session.stop()


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    """The noisy phantom as the 4096 x 48 matrix train.py factors (float32, as read)."""
    return data.to_matrix(data.noisy(data.phantom()))


def dssvd(sc: SparkContext, a: np.ndarray, k: int, partitions: int, **kwargs):
    blocks = train_distributed.row_blocks(sc, a, partitions)
    return train_distributed.distributed_randomized_svd(sc, blocks, a.shape[1], k, **kwargs)


def assert_same_svd(got, expected, rtol: float = SAME_RTOL) -> None:
    """Equal singular values; equal singular vectors up to the sign of each pair."""
    (u, s, vt), (u_ref, s_ref, vt_ref) = got, expected
    np.testing.assert_allclose(s, s_ref, rtol=rtol)
    signs = np.sign(np.sum(u * u_ref, axis=0))
    np.testing.assert_allclose(u * signs, u_ref, atol=SAME_ATOL)
    np.testing.assert_allclose(vt * signs[:, None], vt_ref, atol=SAME_ATOL)


def test_the_spark_application_denoises_as_train_py_does(tmp_path: Path) -> None:
    # case.toml's smoke form, as make demo runs it
    doc = manifests.apply_overrides(CLUSTER, CASE.overrides_for(MANIFEST))
    assert manifests.validate(doc) == []
    result = jobs.run_job(doc, workdir=tmp_path / "job", timeout=JOB_TIMEOUT)
    if not result.succeeded:
        result.raise_for_failure()
    assert result.reason == "COMPLETED" and result.primary().replica_type == "Driver"
    log = result.primary().log()
    assert "spark master=local[2] partitions=2" in log  # 2 executors x 1 core, a block each
    assert "scan (48, 64, 64) -> matrix (4096, 48)" in log

    volume = result.workdir / "volumes" / "scans"  # what the harness mounts at /mnt/pvc
    model_dir = volume / "ct-basis"
    assert sorted(p.name for p in model_dir.iterdir()) == ["basis.npz", "metrics.json"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    for name in ("psnr", "ssim", "psnr_gain", "kept"):  # the Katib StdOut lines, too
        assert f"{name}={metrics[name]!r}" in log
    basis = np.load(model_dir / train.BASIS_FILE)
    assert basis["u"].shape == (4096, 40) and basis["s"].shape == (40,)
    assert basis["shape"].tolist() == [64, 64]

    # One process on the same flags and the same DICOM files (the job wrote the phantom).
    single = train.main(
        ["--sample", f"--data-dir={volume / 'data'}", f"--model-dir={tmp_path / 'single'}"]
    )
    assert metrics["partitions"] == 2
    assert metrics["kept"] == single["kept"]
    for name in [n for n in single if n.startswith("psnr")]:
        assert abs(metrics[name] - single[name]) <= PSNR_CLOSE, (name, metrics, single)
    assert metrics["ssim"] == pytest.approx(single["ssim"], abs=1e-6)
    stored = np.load(tmp_path / "single" / train.BASIS_FILE)
    np.testing.assert_allclose(basis["s"], stored["s"], rtol=SAME_RTOL)


def test_the_smoke_run_is_the_cluster_svd_on_the_phantom() -> None:
    """What the test above runs is the cluster's application: case.toml swaps only its
    arguments, and only the scan and where its files go, not how the SVD is computed."""
    overrides = CASE.overrides_for(MANIFEST)
    assert list(overrides) == ["spec.arguments"]
    cluster_args = CLUSTER["spec"]["arguments"]
    # On a cluster the job reads a real scan from the volume, not the phantom.
    assert "--sample" not in cluster_args and any(
        a.startswith("--series-dir=") for a in cluster_args
    )
    on_the_phantom = [a for a in cluster_args if not a.startswith("--series-dir=")] + ["--sample"]
    cluster = vars(train_distributed.parse_args(on_the_phantom))
    smoke = vars(train_distributed.parse_args(overrides["spec.arguments"]))
    # Where the phantom's DICOM files go, and Spark's blocks (one per task slot by default).
    where = {"data_dir", "partitions"}
    assert {k: v for k, v in smoke.items() if k not in where} == {
        k: v for k, v in cluster.items() if k not in where
    }


def test_what_the_local_run_cannot_show_is_in_the_manifest() -> None:
    spec = CLUSTER["spec"]
    # spark-submit in local mode creates no pods: on a cluster the driver creates the executors
    # under a service account that may, and they import ct_scans from /app as the driver does.
    assert spec["driver"]["serviceAccount"]
    assert {"name": "PYTHONPATH", "value": "/app"} in spec["executor"]["env"]
    # The volume the job writes the basis to is the case's PersistentVolumeClaim.
    claims = {
        d["metadata"]["name"]
        for path in CASE.manifests
        for d in manifests.load(path)
        if d.get("kind") == "PersistentVolumeClaim"
    }
    assert {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]} <= claims


def test_the_distributed_svd_is_numpys(sc: SparkContext, matrix: np.ndarray) -> None:
    # 3 blocks of uneven height (1366, 1365, 1365 rows).
    u, s, vt = dssvd(sc, matrix, K, partitions=3, p=P, q=Q, seed=0)
    assert u.shape == (4096, K) and s.shape == (K,) and vt.shape == (K, 48)
    np.testing.assert_allclose(u.T @ u, np.eye(K), atol=1e-10)
    exact = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s[:LEADING], exact[:LEADING], rtol=LEADING_RTOL)
    np.testing.assert_allclose(s, exact[:K], rtol=ALL_RTOL)
    # The same Omega as model.randomized_svd for the same seed: the same result, to rounding.
    assert_same_svd((u, s, vt), model.randomized_svd(matrix, K, P, Q, seed=0))


def test_blocks_shorter_than_the_projection_still_give_numpys_svd(sc: SparkContext) -> None:
    # 20 x 8 in blocks of 7, 7 and 6 rows, projected on k + p = 8 columns: each block's R has
    # fewer rows than columns, and the last fewer than the others.
    a = data.to_matrix(data.noisy(data.phantom((8, 8, 8))))[:20]
    got = dssvd(sc, a, 4, partitions=3, p=4, q=1, seed=3)
    assert_same_svd(got, model.randomized_svd(a, 4, 4, 1, seed=3))


def test_nothing_dropped_rebuilds_the_scan(sc: SparkContext, matrix: np.ndarray) -> None:
    u, s, vt = dssvd(sc, matrix, matrix.shape[1], partitions=2, p=P, q=Q, seed=0)  # k = n
    assert model.kept(s, 0.0) == matrix.shape[1]
    rebuilt = model.reconstruct(u, s, vt, percent=0.0)
    # 1.7e-11 HU at most here, in values up to 1630 HU.
    np.testing.assert_allclose(rebuilt, matrix, rtol=0, atol=1e-10 * np.abs(matrix).max())
