"""income_census.data: the Adult parser, the download path (against a loopback server), the sample."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from income_census import data
from tests.harness import mirror

TRAIN_LINES = (
    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, "
    "Male, 2174, 0, 40, United-States, <=50K\n"
    "52, Self-emp-inc, 287927, HS-grad, 9, Married-civ-spouse, Exec-managerial, Wife, White, "
    "Female, 15024, 0, 40, United-States, >50K\n"
    "54, ?, 180211, Some-college, 10, Married-civ-spouse, ?, Husband, Asian-Pac-Islander, Male, "
    "0, 0, 60, South, >50K\n"
)
# adult.test as UCI writes it: a first line that is not data, labels with a trailing dot.
TEST_TEXT = (
    "|1x3 Cross validator\n"
    "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, "
    "0, 0, 40, United-States, <=50K.\n"
    "44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, "
    "Black, Male, 7688, 0, 40, ?, >50K.\n"
    "\n"
)


def test_parses_the_training_format() -> None:
    rows, labels = data.parse_adult(TRAIN_LINES)
    assert list(rows.columns) == list(data.COLUMNS[:-1])
    assert labels.tolist() == [0, 1, 1]
    assert rows.loc[0, "workclass"] == "State-gov"  # surrounding spaces gone
    assert rows.loc[1, "capital-gain"] == 15024.0
    assert np.isnan(rows.loc[2, "hours-per-week"]) is np.False_
    assert rows[["workclass", "occupation"]].iloc[2].isna().all()  # "?" is a missing value


def test_parses_the_test_format_header_dots_and_blank_lines() -> None:
    rows, labels = data.parse_adult(TEST_TEXT)
    assert len(rows) == 2 and labels.tolist() == [0, 1]
    assert rows["native-country"].isna().tolist() == [False, True]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no data rows"),
        ("39, State-gov, 77516, Bachelors, 13\n", "row 1 has 5 fields, expected 15"),
        (TRAIN_LINES.replace("<=50K", "maybe"), "unknown income labels"),
        (TRAIN_LINES.replace("2174", "lots"), "capital-gain is 'lots'"),
        (TRAIN_LINES.replace("<=50K\n", "<=50K, extra, more\n"), "row 1 has 17 fields"),
    ],
    ids=["empty", "short-row", "bad-label", "text-in-number", "long-row"],
)
def test_rejects_malformed_files(text: str, message: str) -> None:
    with pytest.raises(data.AdultFormatError, match=message):
        data.parse_adult(text, "adult file")


def test_the_sample_is_real_rows_of_both_files() -> None:
    (train_rows, train_labels), (test_rows, test_labels) = data.load_sample()
    assert (len(train_rows), len(test_rows)) == (4000, 2000)
    assert set(np.unique(train_labels)) == {0, 1}
    # About a quarter of the people in Adult earn >50K; a sample that lost that is not Adult.
    assert 0.2 < train_labels.mean() < 0.3 and 0.2 < test_labels.mean() < 0.3
    assert train_rows["workclass"].isna().any()  # the "?" survive, as in the real files
    sample_dir = data.SAMPLE_DIR
    assert sum(p.stat().st_size for p in sample_dir.glob("sample-adult.*")) < 1_000_000


# --- the download path, against a throwaway HTTP server on 127.0.0.1 -------------------------


FILES = {"adult.data": TRAIN_LINES.encode(), "adult.test": TEST_TEXT.encode()}
SUMS = {name: hashlib.sha256(body).hexdigest() for name, body in FILES.items()}


def test_download_and_parse_through_a_mirror(tmp_path: Path) -> None:
    with mirror.serve_files(FILES) as url:
        (train_rows, train_labels), (test_rows, _) = data.load_adult(
            tmp_path, mirror=url, checksums=SUMS, progress=False
        )
    assert len(train_rows) == 3 and len(test_rows) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adult.data", "adult.test"]
    # A second run reads the verified copies: no server needed.
    (again, _), _ = data.load_adult(tmp_path, mirror="http://127.0.0.1:9/", checksums=SUMS)
    assert again.equals(train_rows)


@pytest.mark.parametrize("fault", ["checksum", "truncated", "missing"])
def test_a_bad_download_leaves_no_file(
    tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "RETRIES", 0)  # retrying cannot mend these (pooch waits 1 s, 2 s)
    files = dict(FILES)
    sums = dict(SUMS)
    if fault == "checksum":
        sums["adult.data"] = "0" * 64
    if fault == "missing":
        del files["adult.data"]
    with (
        mirror.serve_files(files, truncate=fault == "truncated") as url,
        pytest.raises(
            data.DownloadError,
            match={"checksum": "sha256 mismatch", "truncated": "truncated", "missing": "404"}[
                fault
            ],
        ) as caught,
    ):
        data.load_adult(tmp_path, mirror=url, checksums=sums, progress=False)
    assert not (tmp_path / "adult.data").exists()
    assert not list(tmp_path.glob(".*.part"))  # no half-written temporary file either
    assert [p.name for p in tmp_path.iterdir() if p.name != "adult.test"] == []
    assert "\n" not in str(caught.value) and "adult.data" in str(caught.value)


def test_a_tampered_cached_file_is_downloaded_again(tmp_path: Path) -> None:
    (tmp_path / "adult.data").write_text("tampered\n")
    with mirror.serve_files(FILES) as url:
        data.load_adult(tmp_path, mirror=url, checksums=SUMS, progress=False)
    assert (tmp_path / "adult.data").read_bytes() == FILES["adult.data"]


def test_the_real_checksums_are_the_published_ones() -> None:
    # The sample was cut from files with exactly these digests (sample/make_sample.py checks).
    assert data.SHA256 == {
        "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
        "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
    }
    assert data.MIRROR.startswith("https://archive.ics.uci.edu/")
