"""MNIST in its original IDX gzip format: download (checksummed, atomic) and parse.

The full data set is four files (60,000 training and 10,000 test digits, 28 x 28 pixels).
They are downloaded once into a cache directory and verified against their published sha256
before anything reads them. `load_sample()` reads the 5,000 real digits committed in sample/,
stored in the same format so the same parser reads both.

IDX format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of
dimensions, then each dimension as a big-endian unsigned 32-bit integer, then the data, big-endian.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pooch
import requests

from mnist.cli import existing_path, output_dir

# The mirror torchvision downloads from; yann.lecun.com now often refuses plain downloads.
MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
DEFAULT_DATA_DIR = Path("~/.cache/kubeflow-cases/mnist")  # expanded when used
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
RETRIES = 2  # a failed download is tried again this often (pooch waits 1 s, then 2 s)

# sha256 of the files as LeCun, Cortes and Burges distribute them (every mirror serves the same
# bytes); the same values appear in the Hugging Face datasets metadata for MNIST.
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
TRAIN_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SAMPLE_TRAIN_FILES = ("sample-train-images-idx3-ubyte.gz", "sample-train-labels-idx1-ubyte.gz")
SAMPLE_TEST_FILES = ("sample-test-images-idx3-ubyte.gz", "sample-test-labels-idx1-ubyte.gz")

# IDX type codes; the data is big-endian, hence the ">" in every multi-byte dtype.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

VALIDATION_FRACTION = 0.1  # of the training split, held out for val_accuracy / val_loss

Split = tuple[np.ndarray, np.ndarray]  # images (N, 28, 28) uint8, labels (N,) uint8


class IdxError(ValueError):
    """Bytes that are not a well-formed IDX file."""


def parse_idx(data: bytes) -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into a numpy array in native byte order."""
    if len(data) < 4:
        raise IdxError(f"IDX header needs 4 bytes, got {len(data)}")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise IdxError(f"bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTDD)")
    dtype, ndim = IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"IDX header says {ndim} dimensions but the file is {len(data)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise IdxError(
            f"IDX data for shape {shape} needs {expected} bytes, got {len(data) - header}"
            " (truncated or corrupt file)"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of an array (the inverse of `parse_idx`)."""
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise IdxError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(IDX_DTYPES[code]).tobytes()


def read_idx_gz(path: Path) -> np.ndarray:
    """Read a gzipped IDX file; a broken gzip stream is reported as an IdxError naming the file."""
    try:
        data = gzip.decompress(Path(path).read_bytes())
    except (OSError, EOFError) as err:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise IdxError(f"{path}: not a complete gzip file ({err})") from err
    try:
        return parse_idx(data)
    except IdxError as err:
        raise IdxError(f"{path}: {err}") from err


class DownloadError(RuntimeError):
    """A download failed, was truncated, or does not match its checksum."""


def download(url: str, dest: Path, sha256: str | None, *, progress: bool = True) -> Path:
    """Download url to dest unless a verified copy is there; return dest.

    pooch streams to a temporary file beside dest and moves it into place only once its sha256
    matches, so a failed, truncated or corrupt download leaves no file that a later run would
    trust, and replicas sharing a cache volume never see half a file. It fetches again a cached
    copy that no longer matches, retries a failed download RETRIES times and draws a progress
    bar on stderr. sha256=None is for a source that publishes no checksum: the first download's
    sha256 is recorded beside it, in `<dest>.sha256`, and a later copy that differs is refused.
    """
    dest = Path(dest).expanduser()
    record = dest.with_name(dest.name + ".sha256")
    trusted = sha256 or (record.read_text().strip() if record.exists() else None)
    fetcher = pooch.create(
        dest.parent,
        base_url="",
        registry={dest.name: f"sha256:{trusted}" if trusted else None},
        urls={dest.name: url},
        retry_if_failed=RETRIES,
    )
    try:
        fetcher.fetch(dest.name, progressbar=progress)
    except ValueError as err:  # pooch's checksum test (it deleted the download) or a bad URL
        got = re.search(r"but got (\w+)", str(err))
        if got is None:
            raise DownloadError(f"{url}: download failed: {err}") from err
        why = "a corrupt download or a changed file"
        if not sha256:
            why = f"it differs from the first download's, recorded in {record}; delete {dest} and"
            why += " that record to accept the new file"
        raise DownloadError(
            f"{url}: sha256 mismatch, expected {trusted}, got {got[1]} ({why}); nothing was saved"
        ) from err
    except requests.exceptions.ChunkedEncodingError as err:  # the server hung up mid-file
        sizes = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected", str(err))
        told = f", {sizes[1]} of {int(sizes[1]) + int(sizes[2])} bytes" if sizes else ""
        raise DownloadError(f"{url}: truncated download{told}; nothing was saved") from err
    except OSError as err:  # requests' errors (a 404, a refused connection, a timeout), disk
        raise DownloadError(f"{url}: download failed: {err}") from err
    if not trusted:  # first download from a source without a published checksum: record it
        partial = record.with_name(f".{record.name}.{os.getpid()}")
        partial.write_text(pooch.file_hash(str(dest)) + "\n")
        partial.replace(record)
    return dest


def _read_split(directory: Path, images_file: str, labels_file: str) -> Split:
    images = read_idx_gz(directory / images_file)
    labels = read_idx_gz(directory / labels_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise IdxError(
            f"{images_file}: expected uint8 (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.shape != images.shape[:1] or labels.dtype != np.uint8 or labels.max(initial=0) > 9:
        raise IdxError(f"{labels_file}: expected {len(images)} uint8 labels in 0..9")
    return images, labels


def load_mnist(
    data_dir: Path | str = DEFAULT_DATA_DIR,
    *,
    mirror: str = MIRROR,
    checksums: dict[str, str] = SHA256,
    progress: bool = True,
) -> tuple[Split, Split]:
    """The full MNIST as ((train_images, train_labels), (test_images, test_labels)), uint8."""
    data_dir = Path(data_dir).expanduser()
    for name in (*TRAIN_FILES, *TEST_FILES):
        download(
            mirror.rstrip("/") + "/" + name, data_dir / name, checksums[name], progress=progress
        )
    return _read_split(data_dir, *TRAIN_FILES), _read_split(data_dir, *TEST_FILES)


def load_sample(sample_dir: Path | str = SAMPLE_DIR) -> tuple[Split, Split]:
    """The committed sample (4,000 train / 1,000 test real digits), shaped like `load_mnist`."""
    sample_dir = Path(sample_dir)
    return _read_split(sample_dir, *SAMPLE_TRAIN_FILES), _read_split(sample_dir, *SAMPLE_TEST_FILES)


def normalize(images: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1], the input every model in this case expects."""
    return images.astype(np.float32) / 255.0


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every trainer shares to choose its data (read them with `load_chosen`)."""
    parser.add_argument(
        "--sample", action="store_true", help="train on the committed sample (default: full MNIST)"
    )
    parser.add_argument(
        "--dataset",
        type=existing_path,
        default=None,
        help="a prepared .npz with train_x, train_y, test_x, test_y (uint8), as the pipeline's "
        "load_data step writes; overrides --sample and --data-dir (default: none)",
    )
    parser.add_argument(
        "--data-dir",
        type=output_dir,
        default=DEFAULT_DATA_DIR,
        help=f"cache for the downloaded data (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--mirror", default=MIRROR, help=f"where to download from (default: {MIRROR})"
    )


def load_chosen(args: argparse.Namespace, *, progress: bool = True) -> tuple[Split, Split]:
    """The data the flags of `add_data_arguments` chose: a prepared .npz, the sample or MNIST.

    A --dataset that is not such a .npz raises ValueError naming the file and what it must hold.
    """
    if args.dataset is not None:
        try:
            with np.load(args.dataset) as arrays:  # a lone .npy array is no context manager
                names = ("train_x", "train_y", "test_x", "test_y")
                train_x, train_y, test_x, test_y = (arrays[name] for name in names)
        except (KeyError, TypeError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(
                f"--dataset {args.dataset}: not a .npz of uint8 train_x, train_y, test_x, test_y"
                f" as the pipeline's load_data step writes ({err})"
            ) from err
        return (train_x, train_y), (test_x, test_y)
    if args.sample:
        return load_sample()
    return load_mnist(args.data_dir, mirror=args.mirror, progress=progress)


def validation_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (validation, fit) of a seeded shuffle, the same in every trainer.

    An explicit shuffled hold-out: Keras' validation_split takes the last rows, unshuffled.
    """
    order = np.random.default_rng(seed).permutation(count)
    n_val = int(count * VALIDATION_FRACTION)
    return order[:n_val], order[n_val:]
