"""mnist.data: the IDX parser, the download path (against a loopback server) and the sample."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from mnist import data
from tests.harness import mirror


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip(dtype: str) -> None:
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    parsed = data.parse_idx(data.encode_idx(array))
    assert parsed.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(parsed, array)


def test_idx_header_is_big_endian() -> None:
    # The labels header as MNIST's page documents it: magic 0x00000801, then the count.
    encoded = data.encode_idx(np.zeros(60000, np.uint8))
    assert encoded[:8] == bytes.fromhex("000008010000ea60")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "magic"),  # no such type code
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "corrupt"),
        (lambda b: b[:6], "header"),
        (lambda b: b[:3], "header"),
    ],
    ids=["first-byte", "type-code", "truncated-data", "trailing-byte", "short-dims", "short-magic"],
)
def test_idx_rejects_malformed(mutate, message: str) -> None:
    good = data.encode_idx(np.ones((3, 28, 28), np.uint8))
    with pytest.raises(data.IdxError, match=message):
        data.parse_idx(mutate(good))


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(data.encode_idx(np.arange(1000, dtype=np.uint8)))[:-20])
    with pytest.raises(data.IdxError, match="x-idx1-ubyte.gz"):
        data.read_idx_gz(path)


# --- the download path, against a throwaway HTTP server on 127.0.0.1 -------------------------


def tiny_mnist() -> dict[str, bytes]:
    """The four MNIST files, gzipped IDX as the mirror serves them, with 7 and 3 digits."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 7, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    return {name: gzip.compress(data.encode_idx(a)) for name, a in arrays.items()}


def sha256s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(body).hexdigest() for name, body in files.items()}


def test_download_with_good_checksum_is_parsed(tmp_path: Path) -> None:
    files = tiny_mnist()
    cache = tmp_path / "cache"
    with mirror.serve_files(files) as url:
        (train_x, train_y), (test_x, test_y) = data.load_mnist(
            cache, mirror=url, checksums=sha256s(files), progress=False
        )
    assert train_x.shape == (7, 28, 28) and train_y.shape == (7,)
    assert test_x.shape == (3, 28, 28) and test_y.shape == (3,)
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    expected = data.parse_idx(gzip.decompress(files["t10k-images-idx3-ubyte.gz"]))
    np.testing.assert_array_equal(test_x, expected)


def test_cached_files_are_not_downloaded_again(tmp_path: Path) -> None:
    files = tiny_mnist()
    with mirror.serve_files(files) as url:
        data.load_mnist(tmp_path, mirror=url, checksums=sha256s(files), progress=False)
    # The server is gone: a second load must come from the verified cache alone.
    (train_x, _), _ = data.load_mnist(
        tmp_path, mirror="http://127.0.0.1:9/", checksums=sha256s(files), progress=False
    )
    assert len(train_x) == 7


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that retrying cannot mend fails at once (pooch waits 1 s, then 2 s, to retry)."""
    monkeypatch.setattr(data, "RETRIES", 0)


def test_wrong_checksum_leaves_nothing_in_the_cache(tmp_path: Path, no_retries: None) -> None:
    name = "train-labels-idx1-ubyte.gz"
    with (
        mirror.serve_files(tiny_mnist()) as url,
        pytest.raises(data.DownloadError, match="sha256") as caught,
    ):
        data.download(url + name, tmp_path / name, "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert "\n" not in str(caught.value) and "nothing was saved" in str(caught.value)


def test_truncated_download_leaves_nothing_in_the_cache(tmp_path: Path, no_retries: None) -> None:
    name = "train-images-idx3-ubyte.gz"
    files = tiny_mnist()
    with (
        mirror.serve_files(files, truncate=True) as url,
        pytest.raises(data.DownloadError, match="truncated") as caught,
    ):
        data.download(url + name, tmp_path / name, sha256s(files)[name], progress=False)
    assert list(tmp_path.iterdir()) == []
    size = len(files[name])
    assert f"{size // 2} of {size} bytes" in str(caught.value) and "\n" not in str(caught.value)


def test_corrupt_cached_file_is_replaced(tmp_path: Path) -> None:
    name = "t10k-labels-idx1-ubyte.gz"
    files = tiny_mnist()
    (tmp_path / name).write_bytes(b"half a file")
    with mirror.serve_files(files) as url:
        data.download(url + name, tmp_path / name, sha256s(files)[name], progress=False)
    assert (tmp_path / name).read_bytes() == files[name]


def test_unreachable_mirror_is_a_download_error(tmp_path: Path, no_retries: None) -> None:
    with mirror.serve_files({}) as url, pytest.raises(data.DownloadError, match="404") as caught:
        data.download(url + "missing.gz", tmp_path / "missing.gz", "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []
    assert "\n" not in str(caught.value)


class FailsOnce(dict):
    """Files for the mirror that are missing (a 404) the first time they are asked for."""

    asked = 0

    def get(self, name: str, default: bytes | None = None) -> bytes | None:
        self.asked += 1
        return None if self.asked == 1 else super().get(name, default)


def test_a_failed_download_is_retried(tmp_path: Path) -> None:
    name = "t10k-labels-idx1-ubyte.gz"
    files = FailsOnce(tiny_mnist())
    with mirror.serve_files(files) as url:
        data.download(url + name, tmp_path / name, sha256s(files)[name], progress=False)
    assert files.asked == 2
    assert (tmp_path / name).read_bytes() == files[name]


def test_the_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    name = "t10k-images-idx3-ubyte.gz"
    files = tiny_mnist()
    with mirror.serve_files(files) as url:
        data.download(url + name, tmp_path / name, sha256s(files)[name], progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "100%" in captured.err  # tqdm's bar, drawn by pooch


def test_without_a_published_checksum_the_first_download_is_recorded(
    tmp_path: Path, no_retries: None
) -> None:
    name = "train-labels-idx1-ubyte.gz"
    first = tiny_mnist()[name]
    dest, record = tmp_path / name, tmp_path / f"{name}.sha256"
    with mirror.serve_files({name: first}) as url:
        data.download(url + name, dest, None, progress=False)
    assert record.read_text().strip() == hashlib.sha256(first).hexdigest()
    # Cached and matching its record: no server needed.
    assert data.download("http://127.0.0.1:9/" + name, dest, None) == dest
    # The cached copy is damaged and the source now serves other bytes: refused, nothing saved.
    dest.write_bytes(b"damaged")
    with (
        mirror.serve_files({name: gzip.compress(b"other bytes")}) as url,
        pytest.raises(data.DownloadError, match="differs from the first download") as caught,
    ):
        data.download(url + name, dest, None, progress=False)
    assert str(record) in str(caught.value) and "\n" not in str(caught.value)
    assert record.read_text().strip() == hashlib.sha256(first).hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name, record.name]
    assert dest.read_bytes() == b"damaged"  # never trusted: checked against the record
    # The same bytes as the first time are accepted again.
    with mirror.serve_files({name: first}) as url:
        data.download(url + name, dest, None, progress=False)
    assert dest.read_bytes() == first


# --- the committed sample --------------------------------------------------------------------


def test_sample_shapes_and_labels() -> None:
    (train_x, train_y), (test_x, test_y) = data.load_sample()
    assert train_x.shape == (4000, 28, 28) and train_y.shape == (4000,)
    assert test_x.shape == (1000, 28, 28) and test_y.shape == (1000,)
    assert train_x.dtype == test_x.dtype == np.uint8
    # Stratified: every digit, 400 train and 100 test each.
    assert np.bincount(train_y, minlength=10).tolist() == [400] * 10
    assert np.bincount(test_y, minlength=10).tolist() == [100] * 10
    assert train_x.max() == 255 and train_x.min() == 0


def test_sample_fits_the_size_budget() -> None:
    committed = [
        p for p in data.SAMPLE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    ]
    assert sum(p.stat().st_size for p in committed) <= 1_000_000


def test_load_chosen_follows_the_flags(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    data.add_data_arguments(parser)
    (train_x, train_y), (test_x, test_y) = data.load_chosen(parser.parse_args(["--sample"]))
    assert (len(train_x), len(test_x)) == (4000, 1000)
    prepared = tmp_path / "prepared.npz"
    np.savez(
        prepared, train_x=train_x[:10], train_y=train_y[:10], test_x=test_x[:5], test_y=test_y[:5]
    )
    args = parser.parse_args(["--sample", "--dataset", str(prepared)])  # --dataset wins
    (small_x, _), (small_test, _) = data.load_chosen(args)
    assert (len(small_x), len(small_test)) == (10, 5)


def test_validation_split_is_seeded_disjoint_and_a_tenth() -> None:
    val, fit = data.validation_split(4000, seed=42)
    again, _ = data.validation_split(4000, seed=42)
    other, _ = data.validation_split(4000, seed=7)
    assert len(val) == 400 and len(fit) == 3600
    assert not set(val) & set(fit) and set(val) | set(fit) == set(range(4000))
    np.testing.assert_array_equal(val, again)
    assert not np.array_equal(val, other)
