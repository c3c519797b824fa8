"""The CT-scan KFP v2 pipeline: scan -> DICOM to matrix -> SVD on Spark -> denoised pictures.

    python -m ct_scans.pipeline                  # compiles ct_scans/manifests/pipeline.yaml
    python -m ct_scans.pipeline --output FILE    # compiles elsewhere
    python -m ct_scans.pipeline --image REGISTRY/ct-scans:TAG --output FILE   # your own image

The book's case study of several tools in one pipeline: pydicom reads the series, Spark computes
the stochastic SVD, NumPy and matplotlib rebuild and draw the slices, and KFP shows the result
as an HTML artifact (the run's Visualizations tab).

Upload the YAML in the Kubeflow Pipelines UI (or `kfp.Client().create_run_from_pipeline_package`).
To share it, share the YAML: it holds every step's code and names the case image, so anyone whose
cluster can pull the image runs the same pipeline; `kfp.Client().upload_pipeline(...)` puts it in
a Kubeflow install's catalogue for everyone in it. Its defaults denoise the phantom; give `url`
and `sha256` of a zipped DICOM series to denoise a real scan. On a laptop the same pipeline runs
with `kfp.local.SubprocessRunner(use_venv=False)` (ct_scans/tests/test_pipeline.py).

The SVD step runs Spark inside its own pod (local mode, `partitions` tasks on the pod's cores):
for one scan that is enough; for the many-machine version of the same computation submit
manifests/sparkapplication.yaml, which runs the same code on Spark executors.

Every component runs in the case image (Java and PySpark included), so components import inside
their bodies, set `install_kfp_package=False` and install nothing. KFP writes a component's image
into the YAML when this module is imported, so the image is a compile-time setting: `--image`,
or the CT_SCANS_IMAGE environment variable, else the image manifests/kustomization.yaml names.

The pipeline ends in its HTML report and deploys nothing, so it needs no RBAC beyond what every
run has; its artifacts go to Kubeflow Pipelines' store (SeaweedFS since KFP 2.15).
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import argparse
import os
import subprocess
import sys
from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

# The image manifests/kustomization.yaml names (and case.toml); CT_SCANS_IMAGE replaces it when
# this module is imported, which is when KFP fixes each component's image.
DEFAULT_IMAGE = "ghcr.io/kubeflow-case-studies/ct-scans:0.1.0"
IMAGE_VARIABLE = "CT_SCANS_IMAGE"
IMAGE = os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE
COMPILED = Path(__file__).resolve().parent / "manifests" / "pipeline.yaml"


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def load_scan(url: str, sha256: str, scan: Output[Dataset]):
    """A DICOM series as a folder: downloaded (checksummed) from url, or, with no url, the noisy
    phantom written as DICOM, with its ground truth beside the series as truth.npy."""
    import shutil
    from pathlib import Path

    import numpy as np

    from ct_scans import data

    folder = Path(scan.path)
    if url:
        source = data.download_series(url, sha256)
        shutil.copytree(source, folder / "series")
        scan.metadata["source"] = url
    else:
        truth = data.phantom()
        data.write_series(data.noisy(truth), folder / "series")
        np.save(folder / "truth.npy", truth)
        scan.metadata["source"] = "phantom"
    files = sum(1 for p in (folder / "series").rglob("*") if p.is_file())
    scan.metadata["files"] = files
    print(f"{files} files from {scan.metadata['source']}", flush=True)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def dicom_to_matrix(scan: Input[Dataset], matrix: Output[Dataset]):
    """The series' slices sorted by location, as the (rows x cols) x slices matrix (an .npz with
    the slice shape, the locations and, for the phantom, the truth)."""
    from pathlib import Path

    import numpy as np

    from ct_scans import data

    folder = Path(scan.path)
    series = data.read_series(folder / "series")
    for reason in series.skipped:
        print(f"skipped {reason}", flush=True)
    arrays = {
        "matrix": data.to_matrix(series.volume),
        "shape": np.asarray(series.volume.shape),
        "locations": series.locations,
    }
    if (folder / "truth.npy").exists():
        arrays["truth"] = np.load(folder / "truth.npy")
    with Path(matrix.path).open("wb") as f:  # a file object, so numpy adds no ".npz"
        np.savez(f, **arrays)
    slices, rows, cols = series.volume.shape
    matrix.metadata.update({"slices": slices, "rows": rows, "cols": cols})
    matrix.metadata["skipped"] = len(series.skipped)
    print(f"{slices} slices of {rows} x {cols} -> matrix {rows * cols} x {slices}", flush=True)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def svd_on_spark(
    matrix: Input[Dataset],
    rank: int,
    oversampling: int,
    power_iterations: int,
    percent: float,
    partitions: int,
    basis: Output[Model],
    metrics: Output[Metrics],
):
    """The stochastic SVD of the matrix on Spark (ct_scans.train_distributed's), saved as the
    basis.npz the model server loads; PSNR and SSIM go to this step's Metrics."""
    from pathlib import Path

    import numpy as np

    from ct_scans import data, train
    from ct_scans import train_distributed as spark_svd

    arrays = np.load(matrix.path)
    a, (slices, rows, cols) = arrays["matrix"], arrays["shape"].tolist()
    truth = arrays.get("truth")  # the phantom's; a real scan has none
    k = min(rank, *a.shape)
    spark = spark_svd.spark_session(f"local[{partitions}]")
    try:
        blocks = spark_svd.row_blocks(spark.sparkContext, a, partitions)
        u, s, vt = spark_svd.distributed_randomized_svd(
            spark.sparkContext, blocks, a.shape[1], k, oversampling, power_iterations
        )
    finally:
        spark.stop()
    volume = data.to_volume(a, rows, cols)
    scores, _ = train.denoise_report(volume, truth, u, s, vt, percent, keep_volumes=False)
    train.save(Path(basis.path), u, s, (rows, cols), scores)
    basis.metadata.update({"rank": k, "kept": int(scores["kept"]), "slices": slices})
    for name, value in scores.items():
        metrics.log_metric(name, value)
    train.report(scores)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def visualize(matrix: Input[Dataset], basis: Input[Model], report: Output[HTML]):
    """The middle slice at each of the book's percentages, and PSNR against the percentage when
    there is a truth, as one HTML page with the pictures inlined."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from ct_scans import data, model, visualize

    arrays = np.load(matrix.path)
    a, (_, rows, cols) = arrays["matrix"], arrays["shape"].tolist()
    stored = np.load(Path(basis.path) / "basis.npz")
    u, s = stored["u"].astype(np.float64), stored["s"]
    volume = data.to_volume(a, rows, cols)
    denoised = {p: data.to_volume(model.project(u, s, a, p), rows, cols) for p in model.PERCENTAGES}
    shown = {"scan": volume} | {f"drop {p:g}%": v for p, v in denoised.items()}
    table = [("slices, rows, cols", f"{volume.shape}"), ("singular values computed", f"{len(s)}")]
    table += [(f"kept at {p:g}%", f"{model.kept(s, p)}") for p in model.PERCENTAGES]
    work = Path(tempfile.mkdtemp())
    images = {"the middle slice": visualize.save_slices(shown, len(volume) // 2, work / "s.png")}
    if "truth" in arrays:
        truth = arrays["truth"]
        peak = float(np.ptp(truth))
        curve = {p: model.psnr(truth, v, peak) for p, v in denoised.items()}
        noisy = model.psnr(truth, volume, peak)
        figure = visualize.psnr_figure(curve, noisy)
        figure.savefig(work / "psnr.png", dpi=80)
        images["PSNR against the truth"] = work / "psnr.png"
        table += [("PSNR of the scan", f"{noisy:.2f} dB")]
        table += [(f"PSNR at {p:g}%", f"{value:.2f} dB") for p, value in curve.items()]
    Path(report.path).write_text(visualize.html_page("Denoised CT slices", images, table))
    print("\n".join(f"{k}: {v}" for k, v in table), flush=True)


@dsl.pipeline(
    name="ct-scans",
    description="Read a CT series, compute its SVD on Spark, and show it denoised at the book's "
    "percentages.",
)
def ct_pipeline(
    url: str = "",
    sha256: str = "",
    rank: int = 40,
    oversampling: int = 10,
    power_iterations: int = 2,
    percent: float = 5.0,
    partitions: int = 2,
):
    """Defaults are ct_scans.train's, on the phantom; url and sha256 name a zipped series."""
    scan = load_scan(url=url, sha256=sha256)
    scan.set_cpu_request("250m").set_memory_request("512Mi").set_memory_limit("2Gi")

    matrix = dicom_to_matrix(scan=scan.outputs["scan"])
    matrix.set_cpu_request("500m").set_memory_request("1Gi").set_memory_limit("4Gi")

    svd = svd_on_spark(
        matrix=matrix.outputs["matrix"],
        rank=rank,
        oversampling=oversampling,
        power_iterations=power_iterations,
        percent=percent,
        partitions=partitions,
    )
    svd.set_cpu_request("2").set_cpu_limit("2").set_memory_request("2Gi").set_memory_limit("4Gi")

    pictures = visualize(matrix=matrix.outputs["matrix"], basis=svd.outputs["basis"])
    pictures.set_cpu_request("500m").set_memory_request("1Gi").set_memory_limit("2Gi")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compile the CT-scan pipeline to YAML.")
    parser.add_argument(
        "--output",
        type=Path,
        default=COMPILED,
        help="where the YAML goes (default: ct_scans/manifests/pipeline.yaml)",
    )
    parser.add_argument(
        "--image",
        default=IMAGE,
        help=f"the image every step runs in (default: ${IMAGE_VARIABLE}, else {DEFAULT_IMAGE})",
    )
    args = parser.parse_args(argv)
    if not args.image.strip():
        parser.error("--image needs an image name, e.g. registry.example.com/ct-scans:0.1.0")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.image != IMAGE:
        # The components took their image when this module was imported: compile in a fresh
        # interpreter that imports it with the other one.
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, IMAGE_VARIABLE: args.image, "PYTHONPATH": path}
        command = [sys.executable, "-m", "ct_scans.pipeline", "--output", str(args.output)]
        subprocess.run(command, env=env, check=True)
        return
    compiler.Compiler().compile(ct_pipeline, str(args.output))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
