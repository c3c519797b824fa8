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
import hashlib
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mnist.cli import existing_path, output_dir

# The mirror torchvision downloads from; yann.lecun.com now often refuses plain downloads.
MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
DEFAULT_DATA_DIR = Path("~/.cache/kubeflow-cases/mnist")  # expanded when used
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"

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


class DownloadError(RuntimeError):
    """A download failed, was truncated, or does not match its checksum."""


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str, *, progress: bool = True) -> Path:
    """Download url to dest unless a verified copy is there; return dest.

    The bytes go to a temporary file in dest's directory and are renamed into place only after
    the size and sha256 check out, so a failed, truncated or corrupt download never leaves a
    file that a later run would trust, and replicas sharing one cache volume can download at
    the same time without clobbering each other.
    """
    dest = Path(dest)
    if dest.exists():
        if sha256_of(dest) == sha256:
            return dest
        dest.unlink()  # a stale or tampered copy: fetch it again rather than fail forever
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, received = hashlib.sha256(), 0
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=60) as response,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        # http.client returns a short read rather than raising when the server hangs up early.
        if total is not None and received != total:
            raise DownloadError(f"{url}: truncated download, {received} of {total} bytes")
        if digest.hexdigest() != sha256:
            raise DownloadError(
                f"{url}: sha256 mismatch, expected {sha256}, got {digest.hexdigest()}"
                " (corrupt download or a changed mirror); nothing was saved"
            )
        tmp.replace(dest)  # atomic on POSIX: readers see the old state or the whole file
    except OSError as err:  # URLError, timeouts and disk errors are OSErrors
        raise DownloadError(f"{url}: download failed: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
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
