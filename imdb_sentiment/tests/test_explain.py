"""Occlusion attributions (imdb_sentiment/explain.py) say what the model actually does.

On real test reviews of the sample, for both smoke models: taking out the words with the largest
positive attributions lowers the probability of "positive", taking out those with the largest
negative ones raises it, each by a margin, and by more than taking out the words that matter
least. For the TF-IDF model, the attributions agree with the exact linear contribution of each
word's 1- and 2-grams to the logistic regression's logit. A toy scorer checks the arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from imdb_sentiment import data
from imdb_sentiment.explain import METHOD, attributions, explain, without, words_of
from imdb_sentiment.model import SentimentModel, sigmoid

MODELS = ["trained_model_dir", "tfidf_model_dir"]  # the session's BiLSTM and TF-IDF
REMOVED = 3  # words taken out at once
MATTERS = 0.005  # an attribution below this (in probability) is not tested for its direction
MARGIN = 0.5  # removing words moves P by at least this share of the largest one's attribution


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    """Eight real test reviews of the sample: four positive, four negative."""
    _, (texts, labels) = data.load_sample()
    chosen = [*np.flatnonzero(labels == 1)[:4], *np.flatnonzero(labels == 0)[:4]]
    return [texts[i] for i in chosen]


@pytest.fixture(scope="module", params=MODELS, ids=["bilstm", "tfidf"])
def model(request: pytest.FixtureRequest) -> SentimentModel:
    return SentimentModel.load(request.getfixturevalue(request.param))


class ToyScorer:
    """P(positive) = sigmoid(2 * (count of "good") - 3 * (count of "bad")) in the cleaned text,
    as the real models clean it: known attributions."""

    def __init__(self) -> None:
        self.calls = 0

    def probabilities(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        scores = [2.0 * words_of(t).count("good") - 3.0 * words_of(t).count("bad") for t in texts]
        return sigmoid(np.asarray(scores))


def test_attributions_on_a_toy_scorer_are_the_leave_one_word_out_differences() -> None:
    scorer = ToyScorer()
    review = "Good, GOOD film.<br />Bad ending!"
    base, found = attributions(scorer, review)
    assert scorer.calls == 1  # the review and all its variants in one call
    assert base == pytest.approx(sigmoid(2 * 2 - 3))
    assert list(found) == ["good", "film", "bad", "ending"]  # distinct words, in reading order
    assert found["good"] == pytest.approx(sigmoid(1) - sigmoid(-3))  # both "good"s go
    assert found["bad"] == pytest.approx(sigmoid(1) - sigmoid(4))
    assert found["film"] == found["ending"] == 0.0
    answer = explain(scorer, review, top=2)
    assert answer["method"] == METHOD == "occlusion"
    assert answer["label"] == "positive" and answer["probability_positive"] == base
    assert [(w["word"], w["count"]) for w in answer["words"]] == [("good", 2), ("bad", 1)]


def test_without_cleans_the_review_and_drops_every_occurrence() -> None:
    review = "The plot<br/>was DULL, dull; the end."
    assert words_of(review) == ["the", "plot", "was", "dull", "dull", "the", "end"]
    assert without(review, ["dull", "the"]) == "plot was end"
    assert without(review, []) == "the plot was dull dull the end"


def test_the_cleaned_review_gets_the_raw_reviews_probability(model, reviews) -> None:
    # What the attributions subtract from is the raw review's probability, what they subtract
    # is the cleaned variants': the two agree only because the model cleans text the same way.
    # A no-break space is inside a word for the BiLSTM and between words for TF-IDF: kept.
    texts = [*reviews, "The acting\u00a0was superb.<br />A\u2003must\tsee!"]
    cleaned = [" ".join(words_of(r)) for r in texts]
    np.testing.assert_allclose(
        model.probabilities(cleaned), model.probabilities(texts), rtol=0, atol=1e-6
    )


def test_removing_the_top_words_moves_the_probability_the_way_they_say(model, reviews) -> None:
    checked = {"positive": 0, "negative": 0}
    top_moves, least_moves = [], []
    for review in reviews:
        base, found = attributions(model, review)
        ranked = sorted(found, key=lambda w: found[w])  # most negative first
        for sign, words in (("positive", ranked[::-1][:REMOVED]), ("negative", ranked[:REMOVED])):
            words = [
                w
                for w in words
                if abs(found[w]) >= MATTERS and (found[w] > 0) == (sign == "positive")
            ]
            if not words:
                continue
            moved = base - model.probabilities([without(review, words)])[0]
            largest = max(abs(found[w]) for w in words)
            # Positive words out: P falls (moved > 0); negative words out: P rises.
            direction = moved if sign == "positive" else -moved
            assert direction >= MARGIN * largest, (
                f"{model.kind}: taking out the top {sign} words {words} "
                f"({[round(found[w], 4) for w in words]}) moved P from {base:.4f} by {-moved:+.4f}"
                f"\nreview: {review}"
            )
            checked[sign] += 1
        least = sorted(found, key=lambda w: abs(found[w]))[:REMOVED]
        top = sorted(found, key=lambda w: -abs(found[w]))[:REMOVED]
        least_moves.append(abs(base - model.probabilities([without(review, least)])[0]))
        top_moves.append(abs(base - model.probabilities([without(review, top)])[0]))
    # Both directions were tested on most reviews, not skipped for want of strong words.
    assert min(checked.values()) >= len(reviews) // 2, checked
    assert np.mean(top_moves) > 5 * np.mean(least_moves), (top_moves, least_moves)


def tfidf_linear_contributions(model: SentimentModel, review: str) -> dict[str, float]:
    """Each word's exact share of the logistic regression's logit: the sum of coefficient times
    TF-IDF value over the review's 1- and 2-grams that contain it."""
    pipeline = model.classifier.pipeline
    vectorizer, classifier = pipeline["tfidf"], pipeline["classifier"]
    x = vectorizer.transform([review]).tocoo()
    names, coef = vectorizer.get_feature_names_out(), classifier.coef_[0]
    found: dict[str, float] = {}
    for column, value in zip(x.col, x.data, strict=True):
        for word in set(names[column].split()):
            found[word] = found.get(word, 0.0) + coef[column] * value
    return found


def test_tfidf_attributions_agree_with_the_exact_linear_contributions(
    tfidf_model_dir: Path, reviews
) -> None:
    model = SentimentModel.load(tfidf_model_dir)
    assert model.calibration.slope > 0  # calibration keeps the logit's direction
    for review in reviews:
        _, found = attributions(model, review)
        linear = tfidf_linear_contributions(model, review)
        # Words the vectorizer drops (one letter: "a", "i") change nothing when taken out.
        for word in set(found) - set(linear):
            assert len(word) == 1 and found[word] == 0.0, word
        top = sorted(linear, key=lambda w: -abs(found[w]))[:5]
        assert all(np.sign(found[w]) == np.sign(linear[w]) for w in top), [
            (w, found[w], linear[w]) for w in top
        ]
        shared = sorted(linear)
        rho = spearmanr([found[w] for w in shared], [linear[w] for w in shared])[0]
        # 0.86-0.98 on these reviews here; removing a word also re-normalises the others.
        assert rho >= 0.75, f"rank correlation {rho:.2f} with the linear contributions"
