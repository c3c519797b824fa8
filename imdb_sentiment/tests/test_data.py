"""imdb_sentiment.data: the IMDB layout (archive or folder), the sample, the download path."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from imdb_sentiment import data
from imdb_sentiment.sample import make_sample
from tests.harness import mirror

TINY = {
    "aclImdb/README": "not a review",
    "aclImdb/imdb.vocab": "the\nand\n",
    "aclImdb/train/pos/10_9.txt": "A wonderful film.<br /><br />I loved it.",
    "aclImdb/train/pos/2_7.txt": "Good enough, and the music was lovely.",
    "aclImdb/train/neg/0_2.txt": "Dreadful.<br />A waste of time.",
    "aclImdb/train/unsup/0_0.txt": "No label here.",
    "aclImdb/train/urls_pos.txt": "http://www.imdb.com/title/tt0000001/usercomments\n",
    "aclImdb/test/pos/1_10.txt": "Superb acting, café scenes and all.",
    "aclImdb/test/neg/1_1.txt": "Boring.",
    "aclImdb/test/neg/0_4.txt": "Not good, not bad: mostly dull.",
}


def tar_gz(files: dict[str, str | bytes]) -> bytes:
    """A .tar.gz holding `files` (path inside the archive -> text), as the real one is made."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            body = text.encode("utf-8") if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def test_reads_the_layout_labels_from_folders_skipping_unsup_and_other_files(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "tiny.tar.gz"
    archive.write_bytes(tar_gz(TINY))
    (train_x, train_y), (test_x, test_y) = data.read_reviews(archive)
    # Negative first, then positive, each by numeric id (2 before 10), whatever the tar order.
    assert train_x == [
        "Dreadful.<br />A waste of time.",
        "Good enough, and the music was lovely.",
        "A wonderful film.<br /><br />I loved it.",
    ]
    assert train_y.tolist() == [0, 1, 1] and train_y.dtype == np.int64
    assert test_x[-1] == "Superb acting, café scenes and all."  # UTF-8 read as such
    assert test_y.tolist() == [0, 0, 1]
    assert "No label here." not in train_x + test_x  # unsup/ has no label


def test_an_extracted_folder_reads_the_same_as_its_archive(tmp_path: Path) -> None:
    with tarfile.open(make_sample.ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    from_archive = data.load_sample()
    for folder in (tmp_path, tmp_path / "aclImdb"):  # the parent of aclImdb/ or aclImdb/ itself
        from_folder = data.read_reviews(folder)
        for (texts_a, labels_a), (texts_b, labels_b) in zip(from_archive, from_folder, strict=True):
            assert texts_a == texts_b and labels_a.tolist() == labels_b.tolist()


def test_the_sample_has_the_layout_and_the_html_of_the_real_data() -> None:
    (train_x, train_y), (test_x, test_y) = data.load_sample()
    assert (len(train_x), len(test_x)) == (800, 400)
    assert train_y.sum() == 400 and test_y.sum() == 200  # balanced, as IMDB is
    assert sum("<br /><br />" in t for t in train_x) > 400  # the line breaks to clean
    with tarfile.open(make_sample.ARCHIVE) as tar:
        names = tar.getnames()
    assert sum("/unsup/" in n for n in names) == make_sample.UNSUP  # present, and not read
    assert make_sample.ARCHIVE.stat().st_size < 1_000_000


def test_the_sample_is_reproduced_byte_for_byte(tmp_path: Path) -> None:
    again = make_sample.write_archive(tmp_path / "again.tar.gz")
    assert again.read_bytes() == make_sample.ARCHIVE.read_bytes()


def test_the_training_split_holds_out_a_fixed_shuffled_fifth() -> None:
    val, fit = data.validation_split(800, seed=1)
    assert len(val) == 160 and len(fit) == 640
    assert sorted(np.concatenate([val, fit]).tolist()) == list(range(800))
    assert data.validation_split(800, seed=1)[0].tolist() == val.tolist()
    (_, labels), _ = data.load_sample()
    assert 0.35 < labels[val].mean() < 0.65  # both labels held out, not the last rows


@pytest.mark.parametrize(
    "files, message",
    [
        ({**TINY, "aclImdb/train/pos/11_3.txt": "Meh."}, "has 3 stars, which IMDB never files"),
        ({**TINY, "aclImdb/test/neg/9_2.txt": b"caf\xe9"}, "9_2.txt is not UTF-8"),
        (
            {k: v for k, v in TINY.items() if "/test/neg/" not in k},
            "aclImdb/test/ needs reviews in both pos/ and neg/, found 1 positive and 0 negative",
        ),
        ({"README.md": "# some other archive"}, "is it the IMDB archive"),
    ],
    ids=["stars-against-label", "not-utf8", "one-label-only", "another-archive"],
)
def test_a_file_outside_the_layout_is_refused_with_its_name(
    tmp_path: Path, files: dict, message: str
) -> None:
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(tar_gz(files))
    with pytest.raises(data.DataError, match=message):
        data.read_reviews(archive)


@pytest.mark.parametrize("damage", ["truncated", "not-gzip"])
def test_a_broken_archive_is_a_data_error_naming_it(tmp_path: Path, damage: str) -> None:
    whole = tar_gz(TINY)
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else b"<html>404</html>")
    with pytest.raises(data.DataError, match=r"broken\.tar\.gz: not a complete \.tar\.gz"):
        data.read_reviews(archive)


# --- the download path, against a throwaway HTTP server on 127.0.0.1 -------------------------

ARCHIVE_BYTES = tar_gz(TINY)
SUM = hashlib.sha256(ARCHIVE_BYTES).hexdigest()


def test_download_and_read_through_a_mirror(tmp_path: Path) -> None:
    with mirror.serve_files({data.ARCHIVE: ARCHIVE_BYTES}) as url:
        (train_x, _), (test_x, _) = data.load_imdb(
            tmp_path, url=url + data.ARCHIVE, sha256=SUM, progress=False
        )
    assert (len(train_x), len(test_x)) == (3, 3)
    assert [p.name for p in tmp_path.iterdir()] == [data.ARCHIVE]
    # A second run reads the verified copy: no server needed.
    again, _ = data.load_imdb(tmp_path, url="http://127.0.0.1:9/x", sha256=SUM)
    assert again[0] == train_x


@pytest.mark.parametrize("fault", ["checksum", "truncated", "missing"])
def test_a_bad_download_leaves_no_file(
    tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "RETRIES", 0)  # retrying cannot mend these (pooch waits 1 s, 2 s)
    files = {} if fault == "missing" else {data.ARCHIVE: ARCHIVE_BYTES}
    expected = {"checksum": "sha256 mismatch", "truncated": "truncated", "missing": "404"}[fault]
    with (
        mirror.serve_files(files, truncate=fault == "truncated") as url,
        pytest.raises(data.DownloadError, match=expected) as caught,
    ):
        data.load_imdb(
            tmp_path,
            url=url + data.ARCHIVE,
            sha256="0" * 64 if fault == "checksum" else SUM,
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []  # neither the archive nor a half-written part
    assert "\n" not in str(caught.value) and data.ARCHIVE in str(caught.value)


def test_a_tampered_cached_archive_is_downloaded_again(tmp_path: Path) -> None:
    (tmp_path / data.ARCHIVE).write_bytes(gzip.compress(b"tampered"))
    with mirror.serve_files({data.ARCHIVE: ARCHIVE_BYTES}) as url:
        data.load_imdb(tmp_path, url=url + data.ARCHIVE, sha256=SUM, progress=False)
    assert (tmp_path / data.ARCHIVE).read_bytes() == ARCHIVE_BYTES


def test_the_real_source_is_the_one_the_issue_names() -> None:
    assert data.URL == "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
    assert data.SIZE == 84_125_825
    assert data.SHA256 == "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
