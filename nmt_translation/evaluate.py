"""Corpus BLEU and chrF against every reference of a source, with a bootstrap interval.

A Spanish source in the test split has one to many English translations (nmt_translation/data.py
keeps them all), and a hypothesis is scored against all of them at once: BLEU clips each n-gram
count by its largest count in any reference and takes the reference length nearest the
hypothesis; chrF keeps the best-matching reference per sentence. sacrebleu wants the references
as streams (stream j holds the j-th reference of every sentence), so the ragged lists are
transposed and the short ones padded with None, which sacrebleu leaves out. Not with '': its
documentation offers '' too, but sacrebleu 2.6 keeps an empty string as a reference of length 0,
which a short hypothesis then takes as its "nearest" length, escaping the brevity penalty (a test
shows the difference).

Both sides are the cleaned text of data.preprocess (lower case, no accents, punctuation split
off), so the scores are of that text, as the tutorial's model sees it, and the signature says
`nrefs:var|case:mixed|eff:no|tok:13a|...`: 13a leaves the cleaned text as it is. They are not
comparable with detokenised, true-cased WMT scores.

The interval is a percentile bootstrap over sources (Koehn, 2004): draw as many sources as there
are, with replacement and a fixed seed, score that corpus, repeat; the middle `level` of the
scores is the interval. It says how much the score would move on another test set of the same
kind and size, which a comparison of two models must exceed to mean anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics import BLEU, CHRF

METRICS = ("bleu", "chrf")


def _metric(name: str) -> BLEU | CHRF:
    if name == "bleu":
        # force=True: the cleaned text ends in " ." on purpose, which sacrebleu would otherwise
        # warn about as text someone forgot to detokenise.
        return BLEU(force=True)
    if name == "chrf":
        return CHRF()
    raise ValueError(f"metric must be one of {METRICS}, got {name!r}")


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-source reference lists -> sacrebleu's streams, the short ones padded with None."""
    if any(len(refs) == 0 for refs in references):
        empty = next(i for i, refs in enumerate(references) if len(refs) == 0)
        raise ValueError(f"source {empty} has no reference")
    depth = max(len(refs) for refs in references)
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(depth)]


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(
            f"{len(hypotheses)} hypotheses but references for {len(references)} sources"
        )
    if not hypotheses:
        raise ValueError("nothing to score: no hypotheses")


def corpus_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict:
    """{"bleu", "chrf", "bleu_signature", "chrf_signature"}; references[i]: all refs of source i."""
    _check(hypotheses, references)
    streams = reference_streams(references)
    out: dict = {}
    for name in METRICS:
        metric = _metric(name)
        out[name] = float(metric.corpus_score(list(hypotheses), streams).score)
        out[f"{name}_signature"] = str(metric.get_signature())
    return out


def bootstrap_interval(
    hypotheses: Sequence[str],
    references: Sequence[Sequence[str]],
    metric: str = "bleu",
    samples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """(low, high): the percentile bootstrap interval of the corpus score, resampling sources."""
    _check(hypotheses, references)
    if samples < 1 or not 0 < level < 1:
        raise ValueError(f"need samples >= 1 and 0 < level < 1, got {samples} and {level}")
    scorer = _metric(metric)
    # Each sentence's sufficient statistics (n-gram matches and lengths) once; a resampled
    # corpus's score is then a sum of rows, as sacrebleu's own paired bootstrap computes it.
    stats = np.array(
        scorer._extract_corpus_statistics(list(hypotheses), reference_streams(references)),
        dtype=np.float64,
    )
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(stats), size=(samples, len(stats)))
    scores = np.array([scorer._compute_score_from_stats(stats[d].sum(0)).score for d in draws])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def copy_baseline(sources: Sequence[str]) -> list[str]:
    """The copy-the-input hypotheses: each Spanish source offered as its own translation.

    It scores above zero only where the two languages share tokens (punctuation, names such as
    "tom"), which is the floor a model must clear to have learnt anything.
    """
    return list(sources)
