"""Which words pushed a review's prediction, by occlusion (leave one word out).

The method: clean the review with the models' own rule (`model.standardize_text`: line breaks
to spaces, lower case, no punctuation) and split it into words where the BiLSTM does (ASCII
whitespace). For each distinct word w,

    attribution(w) = P(positive | review) - P(positive | the review without every occurrence of w)

with P the served, calibrated probability. A positive attribution means the word pushed the
review towards "positive" (taking it out lowers the probability), a negative one towards
"negative". Every variant of a review goes to the model in one batch (in chunks of CHUNK for a
very long review), so a review of W distinct words costs one prediction of W + 1 texts.

Why occlusion: it asks the model itself, so it works unchanged for the BiLSTM and the TF-IDF
baseline, and what it claims is what a test can check: taking out the words with the largest
positive attributions lowers the probability, taking out those with the largest negative ones
raises it (imdb_sentiment/tests/test_explain.py). What it does not see: words that matter only
together (removing one "not" of "not bad" is measured, the pair as such is not), and for the
BiLSTM a removed word also shifts the words after it, which the model may notice. For the TF-IDF
model the attributions agree in sign with the exact linear contributions of each word's 1- and
2-grams to the logistic regression's logit (also tested).

Cleaning does not change the model's answer: both models clean text with this same rule, so the
cleaned review, words joined by single spaces, gets the probability the raw review gets.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from imdb_sentiment.model import label_of, standardize_text

METHOD = "occlusion"
CHUNK = 512  # variants per model call: bounds the BiLSTM's memory for a very long review
DEFAULT_TOP_WORDS = 10
# ASCII whitespace, where TextVectorization (tf.strings.split) splits; str.split() would also
# split at a no-break space, which the BiLSTM reads as part of a word.
WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")


class Scorer(Protocol):
    """What the explanation needs of a model: SentimentModel has it."""

    def probabilities(self, texts: list[str]) -> np.ndarray: ...


def words_of(review: str) -> list[str]:
    """The review's words as the BiLSTM sees them: cleaned, split on ASCII whitespace."""
    return [word for word in WHITESPACE.split(standardize_text(review)) if word]


def without(review: str, removed: Sequence[str]) -> str:
    """The cleaned review with every occurrence of the removed words taken out."""
    gone = set(removed)
    return " ".join(w for w in words_of(review) if w not in gone)


def attributions(model: Scorer, review: str) -> tuple[float, dict[str, float]]:
    """(P(positive | review), {word: attribution}) for every distinct word, in reading order."""
    distinct = list(dict.fromkeys(words_of(review)))
    texts = [review, *(without(review, [w]) for w in distinct)]
    probabilities = np.concatenate(
        [model.probabilities(texts[i : i + CHUNK]) for i in range(0, len(texts), CHUNK)]
    )
    base = float(probabilities[0])
    return base, {w: base - float(p) for w, p in zip(distinct, probabilities[1:], strict=True)}


def explain(model: Scorer, review: str, top: int = DEFAULT_TOP_WORDS) -> dict:
    """The prediction of one review and its `top` words by absolute attribution, with sign.

    {"label", "probability_positive", "method": "occlusion", "words": [{"word", "attribution",
    "count"}, ...]}, the words largest |attribution| first (ties in reading order).
    """
    base, found = attributions(model, review)
    counts = Counter(words_of(review))
    ranked = sorted(found.items(), key=lambda item: -abs(item[1]))[:top]  # stable: ties in order
    return {
        "label": label_of(base),
        "probability_positive": base,
        "method": METHOD,
        "words": [{"word": w, "attribution": a, "count": counts[w]} for w, a in ranked],
    }
