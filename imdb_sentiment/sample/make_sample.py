"""Write sample/aclImdb_sample.tar.gz: short movie reviews in the IMDB data set's own layout.

    python imdb_sentiment/sample/make_sample.py    # rewrites the archive, byte for byte the same

The reviews are generated from the phrases below, which were written for this repository (no
review of the real data set is in them), so the sample can be committed under the repository's
licence. They are built to be learnable but not trivial, as real reviews are:

- a review is positive or negative overall, and 7-10 or 1-4 stars in its file name, as in IMDB;
- each one talks about several aspects of a film (the acting, the plot, the music, ...); about
  three in four agree with its overall verdict and the rest disagree ("the music was lovely, but
  ..."), so a review can be mixed;
- some judgements are negated ("not boring at all", "was not great"), which a bag of single words
  reads the wrong way round;
- most end with a verdict, some do not; neutral sentences (who watched it, when) pad the length;
- paragraphs are separated by `<br /><br />`, the HTML line breaks the real reviews carry.

The archive holds `aclImdb/train/{pos,neg}`, `aclImdb/test/{pos,neg}` (files `<id>_<stars>.txt`)
and a few unlabelled reviews in `aclImdb/train/unsup` (`<id>_0.txt`), which a reader must skip.
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARCHIVE = HERE / "aclImdb_sample.tar.gz"
COUNTS = {"train": 400, "test": 200}  # reviews per class and split
UNSUP = 20
SEED = 2026
AGREEMENT = 0.75  # the share of aspect judgements that agree with the overall verdict

ASPECTS = [
    "acting", "plot", "script", "music", "score", "dialogue", "cinematography", "pacing",
    "ending", "story", "direction", "cast", "soundtrack", "editing", "humour", "lead actress",
    "lead actor", "villain", "camera work", "set design",
]  # fmt: skip
PLURAL_ASPECTS = ["characters", "special effects", "costumes", "songs", "jokes", "fight scenes"]
GOOD = [
    "wonderful", "brilliant", "superb", "excellent", "moving", "gripping", "beautiful",
    "clever", "funny", "charming", "outstanding", "powerful", "delightful", "touching",
    "memorable", "stunning", "fantastic", "great", "engaging", "fresh", "terrific",
]  # fmt: skip
BAD = [
    "awful", "terrible", "boring", "dull", "clumsy", "lazy", "predictable", "tedious",
    "weak", "painful", "forgettable", "ridiculous", "bland", "confusing", "horrible",
    "wooden", "annoying", "poor", "messy", "pointless", "dreadful",
]  # fmt: skip
LIKED = ["loved", "enjoyed", "admired", "adored", "liked", "appreciated"]
DISLIKED = ["hated", "disliked", "could not stand", "was annoyed by", "regretted", "despised"]
GOOD_SENTENCES = [
    "The {aspect} {was} {good}.",
    "I {liked} the {aspect}.",
    "The {aspect} {is_} {good} and {good2}.",
    "The {aspect} {was} not {bad} at all.",
    "Honestly, the {aspect} {was} {good}.",
    "Everyone I know {liked} the {aspect}, and so did I.",
    "I did not expect the {aspect} to be so {good}.",
    "The {aspect} never felt {bad}.",
]
BAD_SENTENCES = [
    "The {aspect} {was} {bad}.",
    "I {disliked} the {aspect}.",
    "The {aspect} {is_} {bad} and {bad2}.",
    "The {aspect} {was} not {good} at all.",
    "Honestly, the {aspect} {was} {bad}.",
    "The {aspect} {was} supposed to be {good}, but {it} {was} {bad}.",
    "I expected the {aspect} to be {good}; {it} {was} not.",
    "The {aspect} never felt {good}.",
]
GOOD_VERDICTS = [
    "I would happily watch it again.", "Highly recommended.", "One of the best films this year.",
    "A must see.", "It deserves every award it gets.", "Go and see it!",
    "I left the cinema smiling.", "Worth every minute.", "{stars} out of 10.",
]  # fmt: skip
BAD_VERDICTS = [
    "Avoid this one.", "A complete waste of time.", "One of the worst films this year.",
    "Save your money.", "I wanted my two hours back.", "Do not bother.",
    "I almost walked out.", "Not worth the ticket.", "{stars} out of 10.",
]  # fmt: skip
NEUTRAL = [
    "I watched this {kind} with my {who} last {when}.",
    "This is a {kind} from {year}.",
    "I saw it on a {day} evening.",
    "It runs for about two hours.",
    "The film was shot in {place}.",
    "My {who} chose it.",
    "I had read the book before seeing it.",
    "It is based on a true story.",
    "There were only a few people in the cinema.",
    "I rented it on a whim.",
    "It was shown on television last {when}.",
]
FILL = {
    "kind": ["movie", "film", "drama", "comedy", "thriller", "western", "musical", "war film"],
    "who": ["brother", "sister", "friends", "parents", "wife", "husband", "flatmate", "class"],
    "when": ["weekend", "Sunday", "Friday", "week", "summer", "winter"],
    "day": ["Sunday", "Monday", "Friday", "Saturday", "rainy", "cold"],
    "year": [str(y) for y in range(1950, 2025, 3)],
    "place": ["Spain", "Canada", "New Zealand", "Morocco", "Ireland", "Iceland", "Mexico"],
}


def sentence(rng: random.Random, positive: bool) -> str:
    template = rng.choice(GOOD_SENTENCES if positive else BAD_SENTENCES)
    good, good2 = rng.sample(GOOD, 2)
    bad, bad2 = rng.sample(BAD, 2)
    plural = rng.random() < 0.2
    return template.format(
        aspect=rng.choice(PLURAL_ASPECTS if plural else ASPECTS),
        was="were" if plural else "was",
        is_="are" if plural else "is",
        it="they" if plural else "it",
        good=good,
        good2=good2,
        bad=bad,
        bad2=bad2,
        liked=rng.choice(LIKED),
        disliked=rng.choice(DISLIKED),
    )


def neutral(rng: random.Random) -> str:
    template = rng.choice(NEUTRAL)
    return template.format(**{k: rng.choice(v) for k, v in FILL.items()})


def review(rng: random.Random, positive: bool, stars: int) -> str:
    sentences = [neutral(rng) for _ in range(rng.randint(0, 2))]
    for _ in range(rng.randint(2, 9)):
        sentences.append(sentence(rng, positive if rng.random() < AGREEMENT else not positive))
        if rng.random() < 0.25:
            sentences.append(neutral(rng))
    if rng.random() < 0.7:
        verdict = rng.choice(GOOD_VERDICTS if positive else BAD_VERDICTS)
        sentences.append(verdict.format(stars=stars))
    # Paragraphs of one to four sentences, joined by HTML line breaks as on IMDB.
    paragraphs, i = [], 0
    while i < len(sentences):
        n = rng.randint(1, 4)
        paragraphs.append(" ".join(sentences[i : i + n]))
        i += n
    return "<br /><br />".join(paragraphs)


def files(rng: random.Random) -> list[tuple[str, str]]:
    """(path inside the archive, text) of every review."""
    out = []
    for split, count in COUNTS.items():
        for label in ("pos", "neg"):
            positive = label == "pos"
            for i in range(count):
                stars = rng.randint(7, 10) if positive else rng.randint(1, 4)
                out.append(
                    (f"aclImdb/{split}/{label}/{i}_{stars}.txt", review(rng, positive, stars))
                )
    for i in range(UNSUP):
        out.append((f"aclImdb/train/unsup/{i}_0.txt", review(rng, rng.random() < 0.5, 0)))
    return out


def write_archive(path: Path = ARCHIVE) -> Path:
    """A reproducible .tar.gz: sorted members, fixed times and owners, no gzip time stamp."""
    rng = random.Random(SEED)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, text in sorted(files(rng)):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1303862400, 0o644  # 2011-04-27
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(tar_bytes.getvalue(), compresslevel=9, mtime=0))
    return path


if __name__ == "__main__":
    written = write_archive()
    print(f"{written}: {written.stat().st_size:,} bytes")
