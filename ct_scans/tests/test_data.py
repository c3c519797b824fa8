"""ct_scans.data: DICOM series in and out, odd folders, the phantom, the zipped download."""

from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ct_scans import data
from tests.harness import mirror

SMALL = (6, 16, 20)  # slices, rows, cols: non-square, so a transposed slice would show


def small_volume() -> np.ndarray:
    return np.random.default_rng(3).integers(-1000, 2000, SMALL).astype(np.float32)


def test_series_round_trips_through_dicom_in_slice_order(tmp_path: Path) -> None:
    volume = small_volume()
    paths = data.write_series(volume, tmp_path / "series", spacing=2.0, start=-5.0)
    # Shuffle the file names: the reader must order slices by SliceLocation, not by name.
    order = np.random.default_rng(0).permutation(len(paths))
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for new, old in zip(order, paths, strict=True):
        shutil.copy(old, shuffled / f"img{new:02d}.dcm")
    series = data.read_series(shuffled)
    assert series.volume.shape == SMALL
    np.testing.assert_array_equal(series.volume, volume)
    np.testing.assert_allclose(series.locations, -5.0 + 2.0 * np.arange(SMALL[0]))
    ds = pydicom.dcmread(paths[0])
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage and ds.Modality == "CT"


def test_non_dicom_files_and_missing_locations_are_skipped_with_a_reason(tmp_path: Path) -> None:
    volume = small_volume()
    paths = data.write_series(volume, tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = pydicom.dcmread(paths[2])
    del ds.SliceLocation
    ds.save_as(paths[2])
    series = data.read_series(tmp_path)
    assert series.volume.shape == (SMALL[0] - 1, *SMALL[1:])
    np.testing.assert_array_equal(series.volume, np.delete(volume, 2, axis=0))
    assert sorted(series.skipped) == [
        "notes.txt: not a DICOM file (InvalidDicomError)",
        "slice-0002.dcm: no SliceLocation",
    ]


def test_a_folder_without_slices_says_why(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(data.SeriesError, match="no DICOM slice with a SliceLocation.*readme.txt"):
        data.read_series(tmp_path)
    with pytest.raises(data.SeriesError, match="not a folder"):
        data.read_series(tmp_path / "missing")


def test_slices_of_another_size_are_an_error(tmp_path: Path) -> None:
    data.write_series(small_volume(), tmp_path / "a")
    data.write_series(np.zeros((1, 8, 8), np.float32), tmp_path / "b", start=100.0)
    with pytest.raises(data.SeriesError, match="8x8 pixels in a series of 16x20"):
        data.read_series(tmp_path)


def test_reads_pydicoms_real_ct_slice_in_hounsfield_units(tmp_path: Path) -> None:
    source = Path(get_testdata_file("CT_small.dcm"))  # a real 128 x 128 CT slice
    shutil.copy(source, tmp_path / source.name)
    series = data.read_series(tmp_path)
    ds = pydicom.dcmread(source)
    assert series.volume.shape == (1, 128, 128)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(series.volume[0], expected)


def test_matrix_is_one_column_per_slice() -> None:
    volume = small_volume()
    matrix = data.to_matrix(volume)
    assert matrix.shape == (SMALL[1] * SMALL[2], SMALL[0])
    np.testing.assert_array_equal(matrix[:, 4], volume[4].ravel())
    np.testing.assert_array_equal(data.to_volume(matrix, *SMALL[1:]), volume)


def test_phantom_is_seeded_and_head_like() -> None:
    truth = data.phantom()
    assert truth.shape == data.PHANTOM_SHAPE
    np.testing.assert_array_equal(truth, data.phantom())
    assert truth.min() == data.AIR and truth.max() >= 900  # air around, bone in the skull
    middle = truth[truth.shape[0] // 2]
    assert middle[0, 0] == data.AIR and middle[32, 32] > -200  # the brain is inside the skull
    noise = data.noisy(truth) - truth
    assert abs(noise.std() - data.PHANTOM_NOISE) < 2.0


def test_load_chosen_writes_the_phantom_as_dicom_once(tmp_path: Path) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    data.add_data_arguments(parser)
    args = parser.parse_args(["--sample", "--data-dir", str(tmp_path)])
    volume, truth = data.load_chosen(args)
    files = sorted(data.phantom_folder(tmp_path).iterdir())
    assert len(files) == data.PHANTOM_SHAPE[0]
    # What was read back is the noisy phantom, rounded to whole Hounsfield units by int16.
    np.testing.assert_array_equal(volume, np.rint(data.noisy(truth)))
    again, _ = data.load_chosen(args)
    assert sorted(data.phantom_folder(tmp_path).iterdir()) == files
    np.testing.assert_array_equal(again, volume)


# --- the zipped series download, against a throwaway HTTP server on 127.0.0.1 ---------------


def zipped_series(tmp_path: Path) -> bytes:
    folder = tmp_path / "src"
    data.write_series(small_volume(), folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"case-1/{path.name}")
    return buffer.getvalue()


def test_download_series_unpacks_once(tmp_path: Path) -> None:
    body = zipped_series(tmp_path)
    sha = hashlib.sha256(body).hexdigest()
    cache = tmp_path / "cache"
    with mirror.serve_files({"case.zip": body}) as url:
        folder = data.download_series(url + "case.zip", sha, cache, progress=False)
    np.testing.assert_array_equal(data.read_series(folder).volume, small_volume())
    # Cached: a second call needs no server.
    assert data.download_series("http://127.0.0.1:9/x.zip", sha, cache) == folder


@pytest.mark.parametrize("fault", ["checksum", "truncated", "missing"])
def test_a_bad_download_leaves_nothing(
    tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "RETRIES", 0)  # retrying cannot mend these (pooch waits 1 s, 2 s)
    body = zipped_series(tmp_path)
    sha = "0" * 64 if fault == "checksum" else hashlib.sha256(body).hexdigest()
    files = {} if fault == "missing" else {"case.zip": body}
    cache = tmp_path / "cache"
    message = {"checksum": "sha256 mismatch", "truncated": "truncated", "missing": "404"}[fault]
    with (
        mirror.serve_files(files, truncate=fault == "truncated") as url,
        pytest.raises(data.DownloadError, match=message) as caught,
    ):
        data.download_series(url + "case.zip", sha, cache, progress=False)
    assert list(cache.iterdir()) == []  # no archive, no half-unpacked folder
    assert "\n" not in str(caught.value) and "case.zip" in str(caught.value)


def test_a_series_without_a_checksum_is_held_to_its_first_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "RETRIES", 0)
    body = zipped_series(tmp_path)
    cache = tmp_path / "cache"
    files = {"case.zip": body}
    with mirror.serve_files(files) as url:
        folder = data.download_series(url + "case.zip", None, cache, progress=False)
        np.testing.assert_array_equal(data.read_series(folder).volume, small_volume())
        records = list(cache.glob("*.zip.sha256"))
        assert [r.read_text().strip() for r in records] == [hashlib.sha256(body).hexdigest()]
        # The same URL now serves another archive, and the cached one was lost: refused.
        files["case.zip"] = body + b"changed"
        (archive,) = cache.glob("*.zip")
        archive.unlink()
        with pytest.raises(data.DownloadError, match="differs from the first download"):
            data.download_series(url + "case.zip", None, cache, progress=False)
    assert not archive.exists()


def test_an_archive_escaping_its_folder_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.dcm", b"x")
    body = buffer.getvalue()
    cache = tmp_path / "cache"
    with (
        mirror.serve_files({"evil.zip": body}) as url,
        pytest.raises(data.SeriesError, match="outside the folder"),
    ):
        data.download_series(url + "evil.zip", hashlib.sha256(body).hexdigest(), cache)
    assert not (tmp_path / "evil.dcm").exists()
    assert [p.name for p in cache.iterdir() if p.is_dir()] == []
