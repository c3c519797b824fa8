"""Randomized SVD, denoising by dropping the smallest singular values, and image quality.

`randomized_svd(A, k, p, q)` is the algorithm of Halko, Martinsson and Tropp ("Finding
structure with randomness", SIAM Review 2011), which the book ran distributed as Mahout's
`dssvd(A, k, p, q)`: project A onto k + p random directions, sharpen the projection with q power
iterations (re-orthonormalising each time), take an orthonormal basis Q of it, and compute the
exact SVD of the small matrix Q^T A. train_distributed.py computes the same on Spark.

Denoising keeps the strong singular values: dropping "the smallest p %" zeroes every singular
value smaller than p % of the largest one, and `reconstruct` rebuilds the matrix from the rest.
(Read as a share of the *count* of singular values instead, no percentage could both gain a
clear margin of PSNR and lose detail at 30 %: white noise spreads evenly over all components,
so dropping a fraction f of them removes at most a fraction f of the noise, under 0.5 dB for
f = 10 %. The README has the figures.) PSNR and SSIM compare a volume with its ground truth.
"""

from __future__ import annotations

import numpy as np

# The book's percentages of singular values dropped.
PERCENTAGES = (0.1, 1.0, 5.0, 10.0, 30.0)


def randomized_svd(
    a: np.ndarray, k: int, p: int = 10, q: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """U (m x k), s (k,), Vt (k x n) of the rank-k randomized SVD of the m x n matrix a."""
    m, n = a.shape
    if not 1 <= k <= min(m, n):
        raise ValueError(f"k={k} must be between 1 and min(m, n)={min(m, n)}")
    width = min(k + p, n)
    omega = np.random.default_rng(seed).standard_normal((n, width))
    q_basis, _ = np.linalg.qr(a @ omega)
    for _ in range(q):  # power iterations: each multiplies by A A^T, re-orthonormalised
        z, _ = np.linalg.qr(a.T @ q_basis)
        q_basis, _ = np.linalg.qr(a @ z)
    u_small, s, vt = np.linalg.svd(q_basis.T @ a, full_matrices=False)
    return (q_basis @ u_small)[:, :k], s[:k], vt[:k]


def kept(s: np.ndarray, percent: float) -> int:
    """How many singular values (sorted, largest first) are at least `percent` % of the largest."""
    if not 0 <= percent < 100:
        raise ValueError(f"percent must be in [0, 100), got {percent}")
    return int(np.count_nonzero(np.asarray(s) >= np.max(s, initial=0.0) * percent / 100))


def reconstruct(u: np.ndarray, s: np.ndarray, vt: np.ndarray, percent: float = 0.0) -> np.ndarray:
    """U diag(s) Vt with the singular values under `percent` % of the largest zeroed."""
    r = kept(s, percent)
    return (u[:, :r] * s[:r]) @ vt[:r]


def project(u: np.ndarray, s: np.ndarray, columns: np.ndarray, percent: float) -> np.ndarray:
    """New columns (slices as pixel vectors) denoised with a stored basis: U_r U_r^T x.

    What the server does with the basis the pipeline computed: a slice of the same size is
    projected onto the left singular vectors of the singular values that are kept.
    """
    r = kept(s, percent)
    basis = u[:, :r]
    return basis @ (basis.T @ columns)


def psnr(truth: np.ndarray, estimate: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB; the peak is the truth's range unless given."""
    data_range = float(np.ptp(truth)) if data_range is None else data_range
    mse = float(np.mean((np.asarray(truth, np.float64) - estimate) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)


def ssim(truth: np.ndarray, estimate: np.ndarray, data_range: float | None = None) -> float:
    """Mean structural similarity over the slices (scikit-image's, 7x7 windows)."""
    from skimage.metrics import structural_similarity

    data_range = float(np.ptp(truth)) if data_range is None else data_range
    return float(
        np.mean(
            [
                structural_similarity(t, e, data_range=data_range)
                for t, e in zip(
                    np.asarray(truth, np.float64), np.asarray(estimate, np.float64), strict=True
                )
            ]
        )
    )
