"""Slices side by side in the bone colour map, and the PSNR curve, as PNG files and HTML.

Used by train.py (`--images`), the pipeline's visualise step and the notebooks, so a person sees
the same pictures wherever the case runs.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path

# No backend is chosen here: matplotlib draws to files where there is no screen (a pod, CI)
# and inline in a notebook.
import matplotlib.pyplot as plt
import numpy as np

WINDOW = (-150.0, 250.0)  # Hounsfield units shown black to white: a soft-tissue window (bone white)


def slices_figure(volumes: Mapping[str, np.ndarray], index: int, window=WINDOW):
    """One slice of each volume side by side, titled by its label, with the window's scale."""
    fig, axes = plt.subplots(
        1,
        len(volumes),
        figsize=(2.6 * len(volumes) + 0.8, 2.9),
        squeeze=False,
        layout="constrained",
    )
    for ax, (label, volume) in zip(axes[0], volumes.items(), strict=True):
        picture = ax.imshow(volume[index], cmap="bone", vmin=window[0], vmax=window[1])
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.colorbar(picture, ax=axes[0].tolist(), shrink=0.9, label="Hounsfield units")
    return fig


def save_slices(volumes: Mapping[str, np.ndarray], index: int, path: Path) -> Path:
    fig = slices_figure(volumes, index)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def psnr_figure(curve: Mapping[float, float], noisy_psnr: float | None = None):
    """PSNR against the percentage of singular values dropped (log scale, as the book's list)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    xs = sorted(curve)
    ax.plot(xs, [curve[x] for x in xs], "o-", label="denoised")
    if noisy_psnr is not None:
        ax.axhline(noisy_psnr, color="grey", linestyle="--", label="noisy input")
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{x:g}" for x in xs])  # the percentages themselves, not powers of ten
    ax.minorticks_off()
    ax.set_xlabel("singular values dropped (% of the largest, log scale)")
    ax.set_ylabel("PSNR against the truth (dB)")
    ax.set_title("Denoising quality by cut")
    ax.legend()
    fig.tight_layout()
    return fig


def html_page(title: str, images: Mapping[str, Path], table: list[tuple[str, str]]) -> str:
    """A self-contained HTML page: a table of figures and the PNGs inlined, for the KFP UI."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in table)
    pictures = "".join(
        f"<h3>{html.escape(caption)}</h3><img src='data:image/png;base64,"
        f"{base64.b64encode(Path(path).read_bytes()).decode()}'/>"
        for caption, path in images.items()
    )
    return (
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h2>{html.escape(title)}</h2><table border='1'>{rows}</table>{pictures}</body></html>"
    )
