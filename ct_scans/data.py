"""CT scans as DICOM series: download a zipped series (checksummed), read it, write a phantom.

A CT series is a folder of DICOM files, one per slice. `read_series` keeps the files that are
CT-like images with a slice location, sorts them by it and stacks their pixels (in Hounsfield
units: stored value x RescaleSlope + RescaleIntercept) into a volume of shape
(slices, rows, cols). `to_matrix` flattens it into the (rows x cols) x slices matrix whose SVD
the case computes: one column per slice.

For tests and the notebooks, `phantom` builds a 3-D head-like volume with known ground truth
(large ellipsoids for skull and brain, small ones for vessels and nodules that appear in a few
slices only) and `write_series` writes any volume as real DICOM files (CT Image Storage, 16-bit,
with SliceLocation and ImagePositionPatient), so the same reader reads both.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pooch
import pydicom
import requests
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ct_scans.cli import existing_path, output_dir

DEFAULT_DATA_DIR = Path("~/.cache/kubeflow-cases/ct_scans")  # expanded when used
RETRIES = 2  # a failed download is tried again this often (pooch waits 1 s, then 2 s)
PHANTOM_SHAPE = (48, 64, 64)  # slices, rows, cols: the sample the tests and --sample use
PHANTOM_NOISE = 150.0  # Hounsfield units of Gaussian noise: a low-dose scan's grain
AIR, WATER = -1000.0, 0.0


# Copied from mnist.data.DownloadError
class DownloadError(RuntimeError):
    """A download failed, was truncated, or does not match its checksum."""


class SeriesError(ValueError):
    """A folder that does not hold a readable CT series."""


@dataclass
class Series:
    """A CT volume (slices, rows, cols) in Hounsfield units and where each slice came from."""

    volume: np.ndarray
    locations: np.ndarray  # SliceLocation of each slice, ascending
    files: list[Path]
    skipped: list[str] = field(default_factory=list)  # "file: why" for every file left out


def read_series(directory: Path | str) -> Series:
    """Read every DICOM slice with a slice location under directory, sorted by location.

    Files that are not DICOM, hold no pixels, or have no SliceLocation are skipped and listed
    in `Series.skipped` with the reason; slices of another size than the first are an error.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SeriesError(f"{directory} is not a folder of DICOM files")
    slices, skipped = [], []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError) as err:
            skipped.append(f"{path.name}: not a DICOM file ({err.__class__.__name__})")
            continue
        if "PixelData" not in ds:
            skipped.append(f"{path.name}: no pixel data")
            continue
        location = ds.get("SliceLocation")
        if location is None:
            skipped.append(f"{path.name}: no SliceLocation")
            continue
        slices.append((float(location), path, ds))
    if not slices:
        reasons = "; ".join(skipped[:5]) or "the folder is empty"
        raise SeriesError(f"{directory}: no DICOM slice with a SliceLocation ({reasons})")
    slices.sort(key=lambda item: item[0])
    shape = slices[0][2].pixel_array.shape
    images = []
    for _, path, ds in slices:
        pixels = ds.pixel_array
        if pixels.shape != shape:
            raise SeriesError(
                f"{path}: slice of {pixels.shape[0]}x{pixels.shape[1]} pixels in a series of "
                f"{shape[0]}x{shape[1]}"
            )
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        images.append(pixels.astype(np.float32) * slope + intercept)
    return Series(
        volume=np.stack(images),
        locations=np.array([loc for loc, _, _ in slices]),
        files=[path for _, path, _ in slices],
        skipped=skipped,
    )


def to_matrix(volume: np.ndarray) -> np.ndarray:
    """(slices, rows, cols) -> the (rows x cols) x slices matrix: one column per slice."""
    return volume.reshape(volume.shape[0], -1).T


def to_volume(matrix: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The inverse of `to_matrix`."""
    return matrix.T.reshape(-1, rows, cols)


def write_series(
    volume: np.ndarray,
    directory: Path | str,
    *,
    spacing: float = 2.5,
    start: float = -60.0,
    patient: str = "PHANTOM^HEAD",
) -> list[Path]:
    """Write a (slices, rows, cols) volume in Hounsfield units as one CT DICOM file per slice.

    Pixels are stored as signed 16-bit integers with RescaleIntercept 0 and slope 1, so values
    round to whole Hounsfield units. Slice i lies at SliceLocation start + i x spacing (mm).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    stored = np.clip(np.rint(volume), -32768, 32767).astype(np.int16)
    paths = []
    for i, pixels in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"slice-{i:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = "CT", patient, "0"
        ds.InstanceNumber = i + 1
        location = start + i * spacing
        ds.SliceLocation = f"{location:.3f}"
        ds.ImagePositionPatient = [0.0, 0.0, location]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], spacing
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.PixelData = pixels.tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def phantom(shape: tuple[int, int, int] = PHANTOM_SHAPE, seed: int = 0) -> np.ndarray:
    """A head-like volume in Hounsfield units: skull, brain, ventricles and small structures.

    The large ellipsoids change slowly from slice to slice (a few strong singular values); the
    30 small ones sit in a few slices each (many weak ones), the detail that dropping too many
    singular values loses.
    """
    slices, rows, cols = shape
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, slices),
        np.linspace(-1, 1, rows),
        np.linspace(-1, 1, cols),
        indexing="ij",
    )
    volume = np.full(shape, AIR, np.float32)

    def ellipsoid(center, radii, value, add=False) -> None:
        inside = sum(((c - m) / r) ** 2 for c, m, r in zip((z, y, x), center, radii, strict=True))
        mask = inside <= 1.0
        if add:
            volume[mask] += value
        else:
            volume[mask] = value

    ellipsoid((0, 0, 0), (0.95, 0.92, 0.72), 900.0)  # skull: bone
    ellipsoid((0, 0, 0), (0.88, 0.85, 0.65), 35.0)  # brain: soft tissue
    ellipsoid((0.1, -0.1, -0.22), (0.45, 0.3, 0.1), -120.0)  # ventricles (contrast made plain)
    ellipsoid((0.1, -0.1, 0.22), (0.45, 0.3, 0.1), -120.0)
    rng = np.random.default_rng(seed)
    for _ in range(30):  # vessels and nodules: a few voxels across, a few slices deep
        center = (rng.uniform(-0.7, 0.7), rng.uniform(-0.6, 0.6), rng.uniform(-0.45, 0.45))
        radii = tuple(rng.uniform(0.04, 0.12, 3))
        ellipsoid(center, radii, float(rng.uniform(150.0, 400.0)), add=True)
    return volume


def noisy(volume: np.ndarray, sigma: float = PHANTOM_NOISE, seed: int = 1) -> np.ndarray:
    """volume plus Gaussian noise of standard deviation sigma (Hounsfield units)."""
    rng = np.random.default_rng(seed)
    return (volume + rng.normal(0.0, sigma, volume.shape)).astype(np.float32)


# Copied from mnist.data.download
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


def download_series(
    url: str, sha256: str | None, data_dir: Path | str = DEFAULT_DATA_DIR, *, progress: bool = True
) -> Path:
    """Download a zipped DICOM series (checksummed) and unpack it once; return its folder.

    Without a sha256 (a source that publishes none) the archive is named after its URL and the
    first download's sha256 is recorded beside it; a later copy that differs is refused.

    The archive is unpacked into a temporary folder that is renamed into place when complete,
    so an interrupted unpack never passes for a series. Members that would land outside the
    folder (absolute paths, `..`) are refused.
    """
    data_dir = Path(data_dir).expanduser()
    key = sha256[:16] if sha256 else "url-" + hashlib.sha256(url.encode()).hexdigest()[:16]
    archive = download(url, data_dir / f"{key}.zip", sha256 or None, progress=progress)
    folder = data_dir / f"series-{key}"
    if folder.is_dir():
        return folder
    staging = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{folder.name}."))
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                target = (staging / member).resolve()
                if not target.is_relative_to(staging.resolve()):
                    raise SeriesError(f"{url}: archive member {member!r} points outside the folder")
            zipped.extractall(staging)
        try:
            staging.replace(folder)
        except OSError:  # another process on the same volume unpacked it first: use theirs
            if not folder.is_dir():
                raise
    except zipfile.BadZipFile as err:
        raise SeriesError(f"{url}: not a zip archive ({err})") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def phantom_folder(data_dir: Path | str = DEFAULT_DATA_DIR) -> Path:
    """Where `--sample` keeps the noisy phantom's DICOM files under data_dir.

    Named by what makes it, so a change of shape, noise or seed never reuses an old copy.
    """
    shape = "x".join(map(str, PHANTOM_SHAPE))
    return Path(data_dir).expanduser() / f"phantom-{shape}-noise{PHANTOM_NOISE:g}-seed1"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every step shares to choose its scan (read them with `load_chosen`)."""
    parser.add_argument(
        "--sample",
        action="store_true",
        help="the noisy phantom, written as DICOM and read back (default: off)",
    )
    parser.add_argument(
        "--series-dir",
        type=existing_path,
        default=None,
        help="a folder of DICOM files of one series (default: none)",
    )
    parser.add_argument(
        "--url", default=None, help="a zipped DICOM series to download (default: none)"
    )
    parser.add_argument(
        "--sha256",
        default=None,
        help="the zip's sha256 (default: none: the first download's is recorded and a later "
        "copy that differs is refused)",
    )
    parser.add_argument(
        "--data-dir",
        type=output_dir,
        default=DEFAULT_DATA_DIR,
        help=f"cache for downloads and the phantom (default: {DEFAULT_DATA_DIR})",
    )


def load_chosen(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    """(volume, ground truth or None) for the flags of `add_data_arguments`."""
    if args.sample:
        truth = phantom()
        folder = phantom_folder(args.data_dir)
        if not folder.is_dir():  # written once: the same phantom, seed and noise every time
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".phantom."))
            write_series(noisy(truth), staging)
            try:
                staging.replace(folder)
            except OSError:  # another trial on the same volume wrote it first: use theirs
                shutil.rmtree(staging, ignore_errors=True)
                if not folder.is_dir():
                    raise
        return read_series(folder).volume, truth
    if args.url:
        return read_series(download_series(args.url, args.sha256, args.data_dir)).volume, None
    if args.series_dir is None:
        raise SystemExit("choose a scan: --sample, --series-dir DIR or --url URL [--sha256 SUM]")
    return read_series(args.series_dir).volume, None
