"""nmt_translation.data: the tutorial's cleaning, the spa-eng layout, the split, the download."""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import zipfile
from pathlib import Path

import pytest

from nmt_translation import data
from nmt_translation.sample import make_sample
from tests.harness import mirror

TINY = (
    "Go.\tVe.\n"
    "Go.\tVete.\n"
    "I'm tired.\tEstoy cansado.\n"
    "I am tired.\tEstoy cansado.\n"
    "Hello, Tom!\t¡Hola, Tom!\n"
    "Is he still at home?\t¿Todavía está en casa?\n"
)


def spa_zip(text: str | bytes, member: str = data.MEMBER) -> bytes:
    """A zip in spa-eng.zip's layout holding `text` as its spa.txt."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("spa-eng/_about.txt", "not pairs\tat all\tjust\ta note")
        archive.writestr(member, text)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("¿Todavía está en casa?", "¿ todavia esta en casa ?"),  # the tutorial's own example
        ("¡Hola, Tom!", "hola , tom !"),  # ¡ goes, as the tutorial drops it; ¿ stays
        ("El NIÑO   come.", "el nino come ."),  # ñ -> n, runs of spaces collapse
        ("I'm 25 years old.", "im years old ."),  # apostrophes and digits go
        ("Ｈｏｌａ？ ﬁn…", "hola ? fin . . ."),  # NFKD: full-width letters, ligatures, ellipsis
        ("  Ve.  ", "ve ."),
    ],
)
def test_preprocess_is_the_tutorials_standardisation(raw: str, clean: str) -> None:
    assert data.preprocess(raw) == clean
    assert data.preprocess(clean) == clean  # cleaning clean text changes nothing


def test_reads_spanish_english_pairs_from_the_zip_a_text_file_and_a_folder(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "spa-eng.zip"
    archive.write_bytes(spa_zip(TINY))
    pairs = data.read_pairs(archive)
    assert pairs[0] == ("Ve.", "Go.")  # (spanish, english): the file is english<TAB>spanish
    assert pairs[-1] == ("¿Todavía está en casa?", "Is he still at home?")  # raw, UTF-8
    assert len(pairs) == 6  # _about.txt is not read
    (tmp_path / "spa-eng").mkdir()
    (tmp_path / "spa-eng" / "spa.txt").write_text(TINY, encoding="utf-8")
    assert data.read_pairs(tmp_path / "spa-eng" / "spa.txt") == pairs
    assert data.read_pairs(tmp_path) == pairs  # the folder the zip extracts to
    with_attribution = "".join(
        line + "\tCC-BY 2.0 (France) Attribution: tatoeba.org #1 (x) & #2 (y)\n"
        for line in TINY.splitlines()
    )
    (tmp_path / "new.txt").write_text(with_attribution, encoding="utf-8")
    assert data.read_pairs(tmp_path / "new.txt") == pairs  # later copies' third column


@pytest.mark.parametrize(
    "body, message",
    [
        (TINY + "Run!\n", r"line 7: expected english<TAB>spanish\[<TAB>attribution\], got 1"),
        (TINY + "\tCorre.\n", r"line 7: the English sentence is empty"),
        ("Run!\t\n", r"line 1: the Spanish sentence is empty"),
        ("a\tb\tc\td\n", r"line 1: .* got 4 tab-separated fields"),
        (TINY.encode() + b"Caf\xe9\tCaf\xe9\n", r"line 7: not UTF-8 text"),
        ("\n\n", r"no sentence pairs in it"),
    ],
    ids=["one-field", "empty-english", "empty-spanish", "four-fields", "not-utf8", "empty"],
)
def test_a_bad_line_is_refused_naming_file_and_line(
    tmp_path: Path, body: str | bytes, message: str
) -> None:
    archive = tmp_path / "spa-eng.zip"
    archive.write_bytes(spa_zip(body))
    with pytest.raises(data.DataError, match=r"spa-eng\.zip:spa-eng/spa\.txt: " + message):
        data.read_pairs(archive)


def test_an_archive_that_is_not_spa_eng_is_a_data_error_naming_it(tmp_path: Path) -> None:
    other = tmp_path / "other.zip"
    other.write_bytes(spa_zip(TINY, member="fra-eng/fra.txt"))
    with pytest.raises(data.DataError, match=r"other\.zip: no spa-eng/spa\.txt in the archive"):
        data.read_pairs(other)
    cut = tmp_path / "cut.zip"
    cut.write_bytes(spa_zip(TINY * 50)[:300])
    with pytest.raises(data.DataError, match=r"cut\.zip: not a complete \.zip archive"):
        data.read_pairs(cut)


def test_the_sample_has_repeated_sources_with_different_translations() -> None:
    pairs = data.load_sample()
    groups = data.group_by_source(pairs)
    several = [s for s, refs in groups.items() if len(refs) > 1]
    assert 3000 <= len(pairs) <= 5000 and len(groups) > 2000
    assert len(several) > 0.25 * len(groups) and max(map(len, groups.values())) == 3
    text = " ".join(s for s, _ in pairs)
    assert all(mark in text for mark in "¿?¡!ñáéíóú")
    words = {w for source in groups for w in source.split()}
    assert 150 < len(words) < 500  # a small vocabulary
    # One English sentence from several Spanish ones too (tú, usted, a dropped pronoun).
    english = [e for _, e in pairs]
    assert len(set(english)) < len(english)
    with zipfile.ZipFile(make_sample.ARCHIVE) as archive:
        assert archive.namelist() == ["spa-eng/_about.txt", data.MEMBER]
    assert make_sample.ARCHIVE.stat().st_size < 1_000_000


def test_the_sample_is_reproduced_byte_for_byte(tmp_path: Path) -> None:
    again = make_sample.write_archive(tmp_path / "again.zip")
    assert again.read_bytes() == make_sample.ARCHIVE.read_bytes()


def test_the_split_keeps_every_source_with_all_its_translations_in_one_part() -> None:
    pairs = data.load_sample()
    split = data.split_by_source(pairs, seed=0)
    train_sources = {s for s, _ in split.train}
    assert not train_sources & set(split.test) and not train_sources & set(split.valid)
    assert not set(split.valid) & set(split.test)
    groups = data.group_by_source(pairs)
    for part in (split.valid, split.test):
        assert all(part[s] == groups[s] for s in part)  # every translation, none dropped
    assert sorted(split.train) == sorted((s, e) for s in train_sources for e in groups[s])
    total = len(groups)
    assert (len(train_sources), len(split.valid), len(split.test)) == data.split_sizes(total)
    assert abs(len(split.test) - 0.1 * total) <= 1


def test_the_split_depends_on_the_seed_not_on_the_file_order() -> None:
    pairs = data.load_sample()
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    first = data.split_by_source(pairs, seed=3)
    assert data.split_by_source(shuffled, seed=3).test.keys() == first.test.keys()
    assert data.split_by_source(pairs, seed=4).test.keys() != first.test.keys()


def test_a_naive_random_split_of_the_pairs_would_leak() -> None:
    """Why split by source: shuffling pairs puts most multi-translation sources on both sides."""
    pairs = [(data.preprocess(s), data.preprocess(e)) for s, e in data.load_sample()]
    random.Random(0).shuffle(pairs)
    cut = int(0.9 * len(pairs))
    leaked = {s for s, _ in pairs[cut:]} & {s for s, _ in pairs[:cut]}
    assert len(leaked) > 50


@pytest.mark.parametrize(
    "count, ratios, error",
    [
        (2, data.RATIOS, "cannot be split three ways"),
        (10, (0.5, 0.5), "three shares"),
        (10, (0.8, 0.1, 0.2), "add up to 1"),
        (10, (1.0, 0.0, 0.0), "> 0"),
    ],
)
def test_split_sizes_refuse_what_cannot_be_split(count: int, ratios: tuple, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        data.split_sizes(count, ratios)


def test_pairs_that_clean_to_nothing_are_dropped() -> None:
    groups = data.group_by_source([("123", "123"), ("Sí.", "Yes."), ("Sí.", "Yes!"), ("Sí", "…")])
    assert groups == {"si .": ["yes .", "yes !"], "si": [". . ."]}


def test_the_flags_choose_a_file_the_sample_or_the_download(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    data.add_data_arguments(parser)
    spa = tmp_path / "spa.txt"
    spa.write_text(TINY, encoding="utf-8")
    assert data.load_chosen(parser.parse_args(["--data-file", str(spa), "--sample"]))[0] == (
        "Ve.",
        "Go.",
    )
    assert data.load_chosen(parser.parse_args(["--sample"])) == data.load_sample()
    args = parser.parse_args(["--data-dir", str(tmp_path / "cache")])
    assert args.url == data.URL and args.data_file is None and not args.sample
    with pytest.raises(SystemExit):
        parser.parse_args(["--data-file", str(tmp_path / "missing.zip")])


# --- the download path, against a throwaway HTTP server on 127.0.0.1 -------------------------

ARCHIVE_BYTES = spa_zip(TINY)
SUM = hashlib.sha256(ARCHIVE_BYTES).hexdigest()


def test_download_and_read_through_a_mirror(tmp_path: Path) -> None:
    with mirror.serve_files({data.ARCHIVE: ARCHIVE_BYTES}) as url:
        pairs = data.load_pairs(tmp_path, url=url + data.ARCHIVE, progress=False, sha256=SUM)
    assert len(pairs) == 6
    assert [p.name for p in tmp_path.iterdir()] == [data.ARCHIVE]
    # A second run reads the verified copy: no server needed.
    again = data.load_pairs(tmp_path, url="http://127.0.0.1:9/x", progress=False, sha256=SUM)
    assert again == pairs


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
        data.load_pairs(
            tmp_path,
            url=url + data.ARCHIVE,
            progress=False,
            sha256="0" * 64 if fault == "checksum" else SUM,
        )
    assert list(tmp_path.iterdir()) == []  # neither the archive nor a half-written part
    assert "\n" not in str(caught.value) and data.ARCHIVE in str(caught.value)


def test_a_live_file_other_than_the_2018_copy_is_refused_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "RETRIES", 0)
    with (
        mirror.serve_files({data.ARCHIVE: ARCHIVE_BYTES}) as url,
        pytest.raises(data.DownloadError) as caught,
    ):
        data.load_pairs(tmp_path, url=url + data.ARCHIVE, progress=False)  # the real sha256
    message = str(caught.value)
    assert f"got {SUM}" in message and "is not the 2018-05-13 copy (2,638,744 bytes)" in message
    assert "--data-file" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_cached_archive_is_downloaded_again(tmp_path: Path) -> None:
    (tmp_path / data.ARCHIVE).write_bytes(b"PK tampered")
    with mirror.serve_files({data.ARCHIVE: ARCHIVE_BYTES}) as url:
        data.load_pairs(tmp_path, url=url + data.ARCHIVE, progress=False, sha256=SUM)
    assert (tmp_path / data.ARCHIVE).read_bytes() == ARCHIVE_BYTES


def test_the_real_source_is_the_one_the_tutorial_downloads() -> None:
    assert data.URL == "http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip"
    assert data.SIZE == 2_638_744
    assert data.SHA256 == "0c4fd7825d3d872488d38c157f784e035edab4f2ff0df25a2a208790ecb5b58f"
    assert (data.SOURCE, data.TARGET) == ("spa", "eng")
