"""ct_scans.model: the randomized SVD against numpy's exact one, denoising, PSNR and SSIM."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from ct_scans import data, model

# train.py's floors, read straight from case.toml so the test needs no harness (it runs in a case
# folder copied alone): the book's curve at 5 % is what train.py computes by default.
FLOORS = tomllib.loads((Path(data.__file__).parent / "case.toml").read_text())["smoke"]["floors"]


@pytest.fixture(scope="module")
def scan() -> tuple[np.ndarray, np.ndarray]:
    truth = data.phantom()
    return truth, data.noisy(truth)


def test_leading_singular_values_agree_with_numpy(scan) -> None:
    a = data.to_matrix(scan[1])
    exact = np.linalg.svd(a, compute_uv=False)
    u, s, vt = model.randomized_svd(a, k=20, p=10, q=2)
    # With q = 2: the 5 strongest to 1e-6 relative, the first 10 to 1e-4, and the weaker ones,
    # down in the noise, to 2 % (measured: 1e-7, 3e-5 and 1.1e-2).
    np.testing.assert_allclose(s[:5], exact[:5], rtol=1e-6)
    np.testing.assert_allclose(s[:10], exact[:10], rtol=1e-4)
    np.testing.assert_allclose(s, exact[:20], rtol=2e-2)
    np.testing.assert_allclose(u.T @ u, np.eye(20), atol=1e-10)  # orthonormal bases
    np.testing.assert_allclose(vt @ vt.T, np.eye(20), atol=1e-10)


def test_without_power_iterations_the_tail_is_worse(scan) -> None:
    a = data.to_matrix(scan[1])
    exact = np.linalg.svd(a, compute_uv=False)[:20]
    error = {q: np.abs(model.randomized_svd(a, 20, 5, q)[1] - exact).max() for q in (0, 2)}
    assert error[2] < error[0] / 10, error  # what q is for


def test_nothing_dropped_at_full_rank_gives_the_input_back(scan) -> None:
    a = data.to_matrix(scan[1])
    u, s, vt = model.randomized_svd(a, k=a.shape[1], p=0, q=1)
    np.testing.assert_allclose(model.reconstruct(u, s, vt, 0.0), a, atol=1e-2)
    assert model.kept(s, 0.0) == len(s)


def test_percent_counts_singular_values_against_the_largest() -> None:
    s = np.array([100.0, 50.0, 10.0, 4.9, 1.0])
    assert [model.kept(s, p) for p in (0, 1, 5, 10, 30, 60)] == [5, 5, 3, 3, 2, 1]
    for bad in (-1, 100, 250):
        with pytest.raises(ValueError, match=r"\[0, 100\)"):
            model.kept(s, bad)


def test_projecting_a_slice_matches_reconstructing_it(scan) -> None:
    a = data.to_matrix(scan[1])
    u, s, vt = model.randomized_svd(a, k=30, p=10, q=2)
    # For a column of A itself, U_r U_r^T a equals the rank-r reconstruction of that column.
    np.testing.assert_allclose(
        model.project(u, s, a[:, 7:9], 5.0),
        model.reconstruct(u, s, vt, 5.0)[:, 7:9],
        atol=1e-6 * np.abs(a).max(),
    )


def test_psnr_and_ssim() -> None:
    truth = np.zeros((2, 16, 16))
    truth[:, 4:12, 4:12] = 100.0
    assert model.psnr(truth, truth) == float("inf")
    off = truth + 10.0
    assert model.psnr(truth, off) == pytest.approx(20.0)  # 10 log10(100^2 / 10^2)
    assert model.ssim(truth, truth) == pytest.approx(1.0)
    assert model.ssim(truth, np.random.default_rng(0).normal(0, 50, truth.shape)) < 0.2


def test_denoising_curve_has_the_books_shape(scan) -> None:
    """PSNR rises over the noisy input at a moderate percentage, then falls: detail is lost."""
    truth, noisy = scan
    a = data.to_matrix(noisy)
    u, s, vt = model.randomized_svd(a, k=a.shape[1], p=0, q=2)
    peak = float(np.ptp(truth))
    curve = {
        p: model.psnr(truth, data.to_volume(model.reconstruct(u, s, vt, p), 64, 64), peak)
        for p in model.PERCENTAGES
    }
    base = model.psnr(truth, noisy, peak)
    assert curve[0.1] == pytest.approx(base, abs=0.05)  # nothing worth dropping yet
    # The noise floor is gone, the head is not.
    assert curve[5.0] >= base + FLOORS["psnr_gain"], curve
    assert curve[30.0] <= curve[5.0] - 8.0, curve  # two components left: detail lost
    assert curve[30.0] < base, curve
