"""The Anki/Tatoeba Spanish-English pairs: download (checksummed, atomic), read, clean, split.

The TensorFlow "Neural machine translation with attention" tutorial (and the Kubeflow TF2 samples
built on it) downloads `spa-eng.zip` from the URL below. The copy dated 2018-05-13 is 2,638,744
bytes; it holds one tab-separated text file, `spa-eng/spa.txt`, one pair a line:

    Go.<TAB>Ve.
    May I borrow this book?<TAB>¿Puedo tomar prestado este libro?

English first, Spanish second. Later copies on manythings.org add a third column, the Tatoeba
attribution; it is read and dropped. The archive is downloaded once into a cache folder and
checked against its sha256 before anything reads it; the pairs are read straight from it (or from
a `spa.txt` given with `--data-file`). `--sample` reads the committed sample/spa-eng_sample.zip,
which has the same layout, with the same code.

Cleaning is the tutorial's standardisation (`tf_lower_and_split_punct`), in plain Python so the
data, the vocabularies and the server share it without TensorFlow Text:

1. Unicode NFKD, which splits an accented letter into the letter and a combining mark
   ("está" -> "esta" + U+0301) and replaces compatibility characters;
2. lower case;
3. keep only space, a-z and the punctuation `. ? ! , ¿`: the combining marks go (so "está" becomes
   "esta", "niño" "nino"), and so do digits, apostrophes ("I'm" -> "im") and the Spanish `¡`,
   which the tutorial drops while it keeps `¿`;
4. a space on each side of every kept punctuation mark, then runs of spaces collapsed and the
   ends stripped (the tutorial leaves the runs to TextVectorization's whitespace split).

Many Spanish sentences occur several times with different English translations ("Estoy
cansado." is "I'm tired." and "I am tired."; tú and usted are both "you"). A random split of the
pairs would put test sources in training, so `split_by_source` splits distinct cleaned Spanish
sentences, and valid/test map each source to all of its English translations, which is how it is
scored (multi-reference BLEU, nmt_translation/evaluate.py).
"""

from __future__ import annotations

import argparse
import io
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
import requests

from nmt_translation.cli import existing_path, output_dir

SOURCE, TARGET = "spa", "eng"
URL = "http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip"
ARCHIVE = "spa-eng.zip"
MEMBER = "spa-eng/spa.txt"  # the pairs inside the archive
SIZE = 2_638_744
# sha256 of the copy dated 2018-05-13 that the figures of this case were made with.
SHA256 = "0c4fd7825d3d872488d38c157f784e035edab4f2ff0df25a2a208790ecb5b58f"
DEFAULT_DATA_DIR = Path("~/.cache/kubeflow-cases/nmt_translation")  # expanded when used
SAMPLE = Path(__file__).resolve().parent / "sample" / "spa-eng_sample.zip"
RETRIES = 2  # a failed download is tried again this often (pooch waits 1 s, then 2 s)
RATIOS = (0.8, 0.1, 0.1)  # train, valid, test: shares of the distinct Spanish sentences

_DROP = re.compile(r"[^ a-z.?!,¿]")  # the tutorial's `[^ a-z.?!,¿]`
_PUNCT = re.compile(r"([.?!,¿])")
_SPACES = re.compile(r" +")

Pair = tuple[str, str]  # (spanish, english)


class DataError(ValueError):
    """A file that is not the Anki pairs' layout, or data too small to split."""


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


def preprocess(sentence: str) -> str:
    """The tutorial's standardisation: '¿Todavía está en casa?' -> '¿ todavia esta en casa ?'."""
    text = unicodedata.normalize("NFKD", sentence).lower()
    text = _PUNCT.sub(r" \1 ", _DROP.sub("", text))
    return _SPACES.sub(" ", text).strip()


def parse_pairs(text: str, where: str = "<text>") -> list[Pair]:
    """(spanish, english) pairs, raw, from the text of a spa.txt; `where` names it in errors."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3):
            raise DataError(
                f"{where}: line {number}: expected english<TAB>spanish[<TAB>attribution],"
                f" got {len(fields)} tab-separated field{'s' * (len(fields) != 1)}"
            )
        english, spanish = fields[0].strip(), fields[1].strip()
        if not english or not spanish:
            side = "English" if not english else "Spanish"
            raise DataError(f"{where}: line {number}: the {side} sentence is empty")
        pairs.append((spanish, english))
    if not pairs:
        raise DataError(f"{where}: no sentence pairs in it (is it the Anki spa.txt?)")
    return pairs


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{where}: line {line}: not UTF-8 text ({err.reason})") from err


def read_pairs(path: Path | str) -> list[Pair]:
    """(spanish, english) pairs, raw, in file order, from spa-eng.zip or an extracted spa.txt."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = [p for p in (path / "spa.txt", path / MEMBER) if p.is_file()]
        if not found:
            raise DataError(f"{path}: a folder without spa.txt or {MEMBER} in it")
        path = found[0]
    raw = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        if raw[:2] == b"PK":  # a zip's signature, but not a readable zip: cut short
            raise DataError(f"{path}: not a complete .zip archive")
        return parse_pairs(_decode(raw, str(path)), str(path))
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "spa.txt"]
            if not names:
                raise DataError(
                    f"{path}: no {MEMBER} in the archive, only {archive.namelist()[:5]}"
                    " (is it the Anki spa-eng.zip?)"
                )
            member = MEMBER if MEMBER in names else names[0]
            body = archive.read(member)
    except (zipfile.BadZipFile, EOFError, OSError) as err:  # a damaged member (bad CRC, cut)
        raise DataError(f"{path}: not a complete .zip archive ({err})") from err
    where = f"{path}:{member}"
    return parse_pairs(_decode(body, where), where)


def load_pairs(
    data_dir: Path | str = DEFAULT_DATA_DIR,
    url: str = URL,
    progress: bool = True,
    *,
    sha256: str = SHA256,
) -> list[Pair]:
    """The full data, downloaded once and checked against the 2018-05-13 copy's sha256."""
    try:
        archive = download(url, Path(data_dir).expanduser() / ARCHIVE, sha256, progress=progress)
    except DownloadError as err:
        if "sha256 mismatch" not in str(err) or sha256 != SHA256:
            raise
        raise DownloadError(
            f"{err}. The file at {url} is not the 2018-05-13 copy ({SIZE:,} bytes) that this"
            " case's figures were made with; to train on it anyway, download it yourself and"
            " pass it with --data-file (expect other figures)"
        ) from err
    return read_pairs(archive)


def load_sample(path: Path | str = SAMPLE) -> list[Pair]:
    """The committed sample (generated pairs in the same layout, see sample/README.md)."""
    return read_pairs(path)


@dataclass
class Split:
    """The pairs split by cleaned Spanish sentence: no source is in two parts."""

    train: list[Pair]  # cleaned (spanish, english), each distinct pair once
    valid: dict[str, list[str]]  # cleaned Spanish source -> all its cleaned English translations
    test: dict[str, list[str]]


def split_sizes(count: int, ratios: tuple[float, float, float] = RATIOS) -> tuple[int, int, int]:
    """How many of `count` sources go to train, valid and test (each at least one)."""
    if len(ratios) != 3 or min(ratios) <= 0 or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"ratios must be three shares > 0 that add up to 1, got {ratios}")
    if count < 3:
        raise DataError(f"{count} distinct Spanish sentences cannot be split three ways")
    valid = max(1, round(count * ratios[1]))
    test = max(1, round(count * ratios[2]))
    train = count - valid - test
    if train < 1:
        raise DataError(f"{count} distinct Spanish sentences leave none for training")
    return train, valid, test


def group_by_source(pairs: Iterable[Pair]) -> dict[str, list[str]]:
    """Cleaned Spanish -> its distinct cleaned English translations, in first-seen order.

    A pair whose either side cleans to nothing (only digits or foreign letters) is dropped.
    """
    groups: dict[str, list[str]] = {}
    for spanish, english in pairs:
        source, target = preprocess(spanish), preprocess(english)
        if not source or not target:
            continue
        refs = groups.setdefault(source, [])
        if target not in refs:
            refs.append(target)
    return groups


def split_by_source(
    pairs: Iterable[Pair], seed: int, ratios: tuple[float, float, float] = RATIOS
) -> Split:
    """Split by cleaned Spanish sentence: a source and all its translations go to one part.

    The distinct sources are sorted and then shuffled with `seed`, so the split depends on the
    data and the seed only, not on the order of the file.
    """
    groups = group_by_source(pairs)
    sources = sorted(groups)
    n_train, n_valid, _ = split_sizes(len(sources), ratios)
    order = np.random.default_rng(seed).permutation(len(sources))
    chosen = [sources[i] for i in order]
    train = [(s, ref) for s in chosen[:n_train] for ref in groups[s]]
    valid = {s: groups[s] for s in chosen[n_train : n_train + n_valid]}
    test = {s: groups[s] for s in chosen[n_train + n_valid :]}
    return Split(train=train, valid=valid, test=test)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every trainer shares to choose its data (read them with `load_chosen`)."""
    parser.add_argument(
        "--sample",
        action="store_true",
        help="train on the committed sample (default: the full data set)",
    )
    parser.add_argument(
        "--data-file",
        type=existing_path,
        default=None,
        help="a spa-eng.zip or spa.txt already on disk, such as the pipeline's data step writes;"
        " overrides --sample and --data-dir, and is not checked against the sha256 (default: none)",
    )
    parser.add_argument(
        "--data-dir",
        type=output_dir,
        default=DEFAULT_DATA_DIR,
        help=f"cache for the downloaded archive (default: {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--url", default=URL, help=f"where to download from (default: {URL})")


def load_chosen(args: argparse.Namespace, *, progress: bool = True) -> list[Pair]:
    """The raw pairs the flags of `add_data_arguments` chose: a given file, the sample or all."""
    if args.data_file is not None:
        return read_pairs(args.data_file)
    if args.sample:
        return load_sample()
    return load_pairs(args.data_dir, url=args.url, progress=progress)
