"""The two review classifiers, the text cleaning they share, and their calibrated probabilities.

- `bilstm`: the TensorFlow text-classification tutorial's model in Keras 3. A TextVectorization
  layer turns raw review text into word ids, then Embedding -> Bidirectional LSTM -> Dense ->
  Dense(1). Training runs on word ids (`build_bilstm`); the exported model puts the vectorizer in
  front (`export_bilstm`), so the served model takes raw strings.
- `tfidf`: the strong classical baseline, TF-IDF of word 1- and 2-grams and a logistic
  regression (scikit-learn).

Both clean text with the same rule, `standardize`: HTML line breaks become spaces, letters are
lower-cased, punctuation is dropped. The Keras model carries it as a TensorFlow function inside
the saved model; scikit-learn uses `standardize_text`, the same rule in Python, and a test checks
they agree. A model's raw probability of "positive" is then calibrated on held-out reviews by
Platt scaling (`Calibration`): a logistic regression on the raw logit.

TensorFlow and Keras are imported inside the functions that need them: importing them takes
about 10 s, and the baseline, the flags' checks and the server's argument parsing need neither.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imdb_sentiment.cli import positive_float, positive_int

if TYPE_CHECKING:
    import keras
    import tensorflow as tf
    from sklearn.pipeline import Pipeline

MODELS = ("bilstm", "tfidf")
KERAS_FILE, SKLEARN_FILE, CALIBRATION_FILE = "model.keras", "model.joblib", "calibration.json"
PREDICT_SLICE = 512  # reviews per Keras call
# HTML line breaks (`<br />`, `<br/>`, `<br>`, any case) and the punctuation Keras' default
# standardization strips, in syntax both Python's re and TensorFlow's RE2 read the same way.
LINE_BREAK = r"(?i)<br\s*/?>"
PUNCTUATION = r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']"


def standardize_text(text: str) -> str:
    """The cleaning rule in Python (scikit-learn's preprocessor; explanations split with it)."""
    text = re.sub(LINE_BREAK, " ", text.lower())
    return re.sub(PUNCTUATION, "", text)


def standardize(texts: tf.Tensor) -> tf.Tensor:
    """The same rule in TensorFlow, inside the Keras model: raw text in, clean text out."""
    import tensorflow as tf

    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, LINE_BREAK, " ")
    return tf.strings.regex_replace(texts, PUNCTUATION, "")


def _register() -> None:
    """Make `standardize` known to Keras' loader under a fixed name (see `load_keras`)."""
    import keras

    keras.saving.get_custom_objects()["imdb_sentiment>standardize"] = standardize


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the model's shape, shared by train.py and train_distributed.py."""
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        default=20000,
        help="vocabulary size of the BiLSTM, the most frequent words (default: 20000)",
    )
    parser.add_argument(
        "--sequence-length",
        type=positive_int,
        default=300,
        help="words of a review the BiLSTM reads; longer ones are cut (default: 300)",
    )
    parser.add_argument(
        "--embedding-dim",
        type=positive_int,
        default=64,
        help="size of a word's embedding (default: 64)",
    )
    parser.add_argument(
        "--lstm-units", type=positive_int, default=64, help="units of each LSTM (default: 64)"
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=1e-3,
        help="Adam's step size for the BiLSTM (default: 0.001)",
    )


def build_vectorizer(max_tokens: int, sequence_length: int) -> keras.layers.TextVectorization:
    """Raw text -> word ids: 0 pads, 1 is a word outside the vocabulary."""
    import keras

    _register()
    return keras.layers.TextVectorization(
        max_tokens=max_tokens,
        standardize=standardize,
        output_mode="int",
        output_sequence_length=sequence_length,
        name="vectorizer",
    )


def build_bilstm(
    vocabulary_size: int,
    embedding_dim: int = 64,
    lstm_units: int = 64,
    learning_rate: float = 1e-3,
) -> keras.Model:
    """The compiled classifier on word ids: (N, length) int -> (N, 1) probability of positive."""
    import keras

    model = keras.Sequential(name="bilstm")
    model.add(keras.Input(shape=(None,), dtype="int64", name="word_ids"))
    # mask_zero: the LSTMs skip the padding, so a short review is not read as mostly zeros.
    model.add(keras.layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True))
    model.add(keras.layers.Bidirectional(keras.layers.LSTM(lstm_units)))
    model.add(keras.layers.Dense(64, activation="relu"))
    model.add(keras.layers.Dropout(0.5))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def export_bilstm(vectorizer: keras.layers.TextVectorization, model: keras.Model) -> keras.Model:
    """Vectorizer and classifier as one model: (N,) raw strings -> (N, 1) probability."""
    import keras

    texts = keras.Input(shape=(1,), dtype="string", name="review")
    return keras.Model(texts, model(vectorizer(texts)), name="imdb_bilstm")


def build_tfidf(c: float = 10.0, min_df: int = 2, seed: int = 42) -> Pipeline:
    """TF-IDF of word 1- and 2-grams, then a logistic regression (inverse regularisation c)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    preprocessor=standardize_text,
                    ngram_range=(1, 2),
                    min_df=min_df,
                    sublinear_tf=True,
                ),
            ),
            ("classifier", LogisticRegression(C=c, max_iter=1000, random_state=seed)),
        ]
    )


def load_keras(path: Path) -> keras.Model:
    import keras

    _register()
    return keras.saving.load_model(path)


# Platt scaling ------------------------------------------------------------------------------


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Calibration:
    """calibrated p = sigmoid(slope * logit(raw p) + intercept), fitted on held-out reviews."""

    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def fit(cls, raw: np.ndarray, labels: np.ndarray) -> Calibration:
        from sklearn.linear_model import LogisticRegression

        if len(set(np.asarray(labels).tolist())) < 2:
            return cls()  # nothing to fit against: leave the probabilities as they are
        fitted = LogisticRegression(C=1e4).fit(logit(raw).reshape(-1, 1), labels)
        return cls(float(fitted.coef_[0, 0]), float(fitted.intercept_[0]))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return sigmoid(self.slope * logit(raw) + self.intercept)

    def save(self, folder: Path) -> None:
        (folder / CALIBRATION_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Calibration:
        return cls(**json.loads((folder / CALIBRATION_FILE).read_text()))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE: over ten equal-width bins of the predicted probability of "positive", the mean gap
    between that probability and the share of positive reviews, weighted by the bin's size."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    which = np.minimum((probs * bins).astype(int), bins - 1)
    gaps = [
        abs(probs[which == b].mean() - labels[which == b].mean()) * np.mean(which == b)
        for b in range(bins)
        if np.any(which == b)
    ]
    return float(sum(gaps))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


# Either model, loaded from its folder -------------------------------------------------------


class Classifier(Protocol):
    kind: str

    def raw_probabilities(self, texts: list[str]) -> np.ndarray: ...


class KerasClassifier:
    kind = "bilstm"

    def __init__(self, model: keras.Model):
        self.model = model

    def raw_probabilities(self, texts: list[str]) -> np.ndarray:
        # In slices, so 25,000 reviews never make one batch (a server's requests are one slice).
        slices = [np.asarray(texts[i : i + PREDICT_SLICE], dtype=object).reshape(-1, 1)
                  for i in range(0, len(texts), PREDICT_SLICE)]  # fmt: skip
        probs = [self.model.predict_on_batch(batch).reshape(-1) for batch in slices]
        return np.concatenate(probs).astype(np.float64) if probs else np.zeros(0)


class SklearnClassifier:
    kind = "tfidf"

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def raw_probabilities(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.predict_proba(list(texts))[:, 1]


class SentimentModel:
    """A trained model and its calibration: review texts in, probabilities of "positive" out."""

    def __init__(self, classifier: Classifier, calibration: Calibration):
        self.classifier, self.calibration = classifier, calibration
        self.kind = classifier.kind

    @classmethod
    def load(cls, folder: Path | str) -> SentimentModel:
        """The model train.py wrote into folder: model.keras (bilstm) or model.joblib (tfidf)."""
        folder = Path(folder)
        if (folder / KERAS_FILE).exists():
            classifier: Classifier = KerasClassifier(load_keras(folder / KERAS_FILE))
        elif (folder / SKLEARN_FILE).exists():
            import joblib

            classifier = SklearnClassifier(joblib.load(folder / SKLEARN_FILE))
        else:
            raise FileNotFoundError(
                f"{folder} holds neither {KERAS_FILE} nor {SKLEARN_FILE}: train a model into it"
                " with python -m imdb_sentiment.train --model-dir"
            )
        return cls(classifier, Calibration.load(folder))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities that each review is positive, float64 (N,)."""
        if not texts:
            return np.zeros(0)
        return self.calibration(self.classifier.raw_probabilities(texts))


def label_of(probability: float) -> str:
    return "positive" if probability >= 0.5 else "negative"
