"""Compute the SVD basis of a CT scan and denoise it: this case's "training", in one process.

    python -m ct_scans.train --sample --model-dir /tmp/ct            # the noisy phantom, ~5 s
    python -m ct_scans.train --series-dir DIR --model-dir /tmp/ct    # a DICOM series of your own

The scan becomes the (rows x cols) x slices matrix A; `ct_scans.model.randomized_svd(A, k, p, q)`
computes its rank-k basis, and the scan is rebuilt with the singular values under --percent % of
the largest dropped, and at each of the book's percentages. With a ground truth (the phantom)
the PSNR and SSIM of each are printed as `name=value` lines, which Katib's StdOut collector
reads, and written to metrics.json; `psnr` and `ssim` are those at --percent.

--model-dir receives basis.npz (U, s and the slice shape: what the server denoises new slices
with), metrics.json and, with --images, PNGs of a slice at every percentage.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ct_scans import data, model
from ct_scans.cli import fail, non_negative_int, output_dir, percentage, positive_int, seed

BASIS_FILE = "basis.npz"


def metric_name(prefix: str, percent: float) -> str:
    """`psnr_drop_0_1` for 0.1 %: Katib's metric names are word characters only."""
    return f"{prefix}_drop_{percent:g}".replace(".", "_")


def add_svd_arguments(parser: argparse.ArgumentParser) -> None:
    """The parameters of dssvd(A, k, p, q) and of the denoising, as flags for Katib."""
    parser.add_argument(
        "--rank", type=positive_int, default=40, help="k: singular values computed (default: 40)"
    )
    parser.add_argument(
        "--oversampling",
        type=non_negative_int,
        default=10,
        help="p: extra random directions (default: 10)",
    )
    parser.add_argument(
        "--power-iterations",
        type=non_negative_int,
        default=2,
        help="q: power iterations (default: 2)",
    )
    parser.add_argument(
        "--percent",
        type=percentage,
        default=5.0,
        help="drop singular values under this %% of the largest, 0 to under 100 (default: 5.0)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random projection seed (default: 0)")


def check_scan_chosen(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What no single flag's type can check: that one of the data flags names a scan."""
    if not (args.sample or args.series_dir or args.url):
        parser.error("choose a scan: --sample, --series-dir DIR or --url URL [--sha256 SUM]")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Denoise a CT scan with a randomized SVD.")
    data.add_data_arguments(parser)  # --sample, --series-dir, --url, --sha256, --data-dir
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where basis.npz and metrics.json go (default: model)",
    )
    add_svd_arguments(parser)
    parser.add_argument("--images", action="store_true", help="also save slice PNGs (default: off)")
    args = parser.parse_args(argv)
    check_scan_chosen(parser, args)
    return args


def report(metrics: dict[str, float]) -> None:
    """Print metrics as name=value lines; repr keeps every digit, so stdout and JSON agree."""
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)


def denoise_report(
    volume: np.ndarray,
    truth: np.ndarray | None,
    u: np.ndarray,
    s: np.ndarray,
    vt: np.ndarray,
    percent: float,
    keep_volumes: bool = True,
) -> tuple[dict[str, float], dict[float, np.ndarray]]:
    """Metrics at --percent and at the book's percentages, and the denoised volumes.

    Without a truth there is nothing to score, so no volume is rebuilt unless keep_volumes asks
    for them (for pictures): a 512 x 512 x 200 scan rebuilt six times would take gigabytes.
    """
    rows, cols = volume.shape[1:]
    metrics: dict[str, float] = {"kept": float(model.kept(s, percent)), "rank": float(len(s))}
    volumes: dict[float, np.ndarray] = {}
    if truth is None and not keep_volumes:
        return metrics, volumes
    peak = None if truth is None else float(np.ptp(truth))  # one range, so figures compare
    for p in sorted({*model.PERCENTAGES, percent}):
        denoised = data.to_volume(model.reconstruct(u, s, vt, p).astype(np.float32), rows, cols)
        if truth is not None:
            metrics[metric_name("psnr", p)] = model.psnr(truth, denoised, peak)
            if p == percent:
                metrics["ssim"] = model.ssim(truth, denoised, peak)
        if keep_volumes:
            volumes[p] = denoised
    if truth is not None:
        metrics["psnr_noisy"] = model.psnr(truth, volume, peak)
        metrics["psnr"] = metrics[metric_name("psnr", percent)]
        metrics["ssim_noisy"] = model.ssim(truth, volume, peak)
        metrics["psnr_gain"] = metrics["psnr"] - metrics["psnr_noisy"]
    return metrics, volumes


def save(model_dir: Path, u, s, shape, metrics: dict[str, float]) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    np.savez(model_dir / BASIS_FILE, u=u.astype(np.float32), s=s, shape=np.asarray(shape))
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def save_images(model_dir: Path, volume, truth, volumes: dict[float, np.ndarray]) -> None:
    from ct_scans import visualize

    index = volume.shape[0] // 2
    shown = {"original": volume} if truth is None else {"truth": truth, "noisy": volume}
    shown |= {f"drop {p:g}%": v for p, v in volumes.items() if p in model.PERCENTAGES}
    visualize.save_slices(shown, index, model_dir / "slices.png")


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    try:
        volume, truth = data.load_chosen(args)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, unreadable
        fail(f"{err} (check --series-dir, --url and --data-dir, or use the phantom: --sample)")
    a = data.to_matrix(volume)
    print(f"scan {volume.shape} -> matrix {a.shape}", flush=True)
    k = min(args.rank, *a.shape)

    start = time.perf_counter()
    u, s, vt = model.randomized_svd(a, k, args.oversampling, args.power_iterations, args.seed)
    seconds = time.perf_counter() - start

    metrics, volumes = denoise_report(volume, truth, u, s, vt, args.percent, args.images)
    metrics["svd_seconds"] = seconds
    save(args.model_dir, u, s, volume.shape[1:], metrics)
    if args.images:
        save_images(args.model_dir, volume, truth, volumes)
    report(metrics)
    return metrics


if __name__ == "__main__":
    main()
