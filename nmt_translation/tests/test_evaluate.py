"""nmt_translation.evaluate: multi-reference BLEU and chrF, the bootstrap interval, copy baseline."""

from __future__ import annotations

import math
import random

import pytest

from nmt_translation import data, evaluate

REFS = [["the cat sat on the mat ."], ["i am tired .", "im tired .", "i feel tired today ."]]


def test_identical_hypotheses_score_100() -> None:
    scores = evaluate.corpus_scores(["the cat sat on the mat .", "i am tired ."], REFS)
    assert scores["bleu"] == pytest.approx(100) and scores["chrf"] == pytest.approx(100)
    assert scores["bleu_signature"].startswith("nrefs:var|")  # 1 and 3 references
    assert "tok:13a" in scores["bleu_signature"] and "nc:6" in scores["chrf_signature"]


def test_a_hypothesis_matching_another_reference_scores_as_a_match() -> None:
    hypotheses = ["the cat sat on the mat .", "i feel tired today ."]  # the 3rd reference
    multi = evaluate.corpus_scores(hypotheses, REFS)
    single = evaluate.corpus_scores(hypotheses, [refs[:1] for refs in REFS])
    assert multi["bleu"] == pytest.approx(100) and multi["chrf"] == pytest.approx(100)
    assert single["bleu"] < 80 and single["chrf"] < 90
    reordered = evaluate.corpus_scores(hypotheses, [REFS[0], REFS[1][::-1]])
    assert reordered["bleu"] == pytest.approx(multi["bleu"])  # the order of references is moot


def test_missing_references_are_left_out_not_scored_as_empty() -> None:
    """A short hypothesis pays the brevity penalty against its one reference.

    Every n-gram matches, so BLEU = 100 * exp(1 - 12 / 8): reference lengths 6 + 6 (the nearest
    of the second source's), hypothesis 2 + 6. Padding the first source with '' would offer it
    a reference of length 0 and score 100.
    """
    hypotheses = ["a b", "x y z w v u"]
    references = [["a b c d e f"], ["x y z w v u", "p q r", "s t u"]]
    assert evaluate.reference_streams(references) == [
        ["a b c d e f", "x y z w v u"],
        [None, "p q r"],
        [None, "s t u"],
    ]
    bleu = evaluate.corpus_scores(hypotheses, references)["bleu"]
    assert bleu == pytest.approx(100 * math.exp(1 - 12 / 8), abs=0.01)


@pytest.mark.parametrize(
    "hypotheses, references, error",
    [
        (["a"], [["a"], ["b"]], "1 hypotheses but references for 2 sources"),
        (["a", "b"], [["a"], []], "source 1 has no reference"),
        ([], [], "nothing to score"),
    ],
)
def test_mismatched_inputs_are_refused(hypotheses: list, references: list, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        evaluate.corpus_scores(hypotheses, references)


def degraded(references: list[list[str]], seed: int) -> list[str]:
    """A system that gets about two words in three right: each word of a reference kept or not."""
    rng = random.Random(seed)
    out = []
    for refs in references:
        words = rng.choice(refs).split()
        out.append(" ".join(w for w in words if rng.random() < 0.7) or words[0])
    return out


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[list[str]]]:
    groups = data.group_by_source(data.load_sample())
    references = list(groups.values())[:800]
    return degraded(references, seed=1), references


@pytest.mark.parametrize("metric", evaluate.METRICS)
def test_the_interval_holds_the_score_and_narrows_with_more_sources(
    corpus: tuple[list[str], list[list[str]]], metric: str
) -> None:
    hypotheses, references = corpus
    widths = []
    for n in (50, 800):
        point = evaluate.corpus_scores(hypotheses[:n], references[:n])[metric]
        low, high = evaluate.bootstrap_interval(hypotheses[:n], references[:n], metric, 300)
        assert low < point < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # 16 times the sources: about a quarter of the width


def test_the_interval_is_seeded_and_its_level_sets_its_width(
    corpus: tuple[list[str], list[list[str]]],
) -> None:
    hypotheses, references = corpus[0][:200], corpus[1][:200]
    first = evaluate.bootstrap_interval(hypotheses, references, samples=200, seed=7)
    assert evaluate.bootstrap_interval(hypotheses, references, samples=200, seed=7) == first
    assert evaluate.bootstrap_interval(hypotheses, references, samples=200, seed=8) != first
    half = evaluate.bootstrap_interval(hypotheses, references, samples=200, seed=7, level=0.5)
    assert first[0] < half[0] < half[1] < first[1]
    with pytest.raises(ValueError, match="metric must be one of"):
        evaluate.bootstrap_interval(hypotheses, references, metric="ter")
    with pytest.raises(ValueError, match="0 < level < 1"):
        evaluate.bootstrap_interval(hypotheses, references, level=95)


def test_copying_the_spanish_input_scores_near_zero_on_the_sample() -> None:
    split = data.split_by_source(data.load_sample(), seed=0)
    sources = list(split.test)
    assert evaluate.copy_baseline(sources) == sources
    copied = evaluate.corpus_scores(evaluate.copy_baseline(sources), list(split.test.values()))
    assert 0 < copied["bleu"] < 3 and 5 < copied["chrf"] < 20  # punctuation and names match
    references = list(split.test.values())
    perfect = evaluate.corpus_scores([refs[0] for refs in references], references)
    assert perfect["bleu"] == pytest.approx(100)
