"""The cleaning rule, the calibration and the loader of imdb_sentiment/model.py.

Training and serving clean text with one rule in two languages: TensorFlow's `standardize`
inside the BiLSTM, Python's `standardize_text` for TF-IDF and the explanations. They must agree on
every review of the sample and on strings made to trip them (line-break spellings, punctuation,
accents, other scripts), and the saved BiLSTM must carry the rule. Platt scaling must bring an
overconfident model's calibration error down on reviews it was not fitted on, and the error
itself is checked on cases worked out by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imdb_sentiment import data
from imdb_sentiment.explain import words_of
from imdb_sentiment.model import (
    Calibration,
    SentimentModel,
    expected_calibration_error,
    label_of,
    load_keras,
    logit,
    sigmoid,
    standardize,
    standardize_text,
)

TRICKY = [
    "Great<br />film",
    "A<BR>B",
    "x<br/>y",
    "x<br   />y",
    "x<Br />y",
    "<br /><br />",
    "Ébouriffant ! Ça c'est génial…",
    "ÀÉÎÕÜ ÑANDÚ",
    "İstanbul",
    "STRASSE ẞ",
    "ΣΊΣΥΦΟΣ",
    "“Quoted” — dash – ‘x’",
    "don't",
    "a.b,c;d:e!f?g",
    "tab\tnew\nline",
    "émoji 😀 ok",
    "full－width！",
    "10/10 $5 #1 @me 50%",
    "<b>bold</b> <i>it</i>",
    "back\\slash [x] {y} ^z ~w `q` |p",
    "_under_score-dash",
    "\u00a0no-break\u2003em space",
    "ǅ titlecase ǈ",
    "",
]


@pytest.fixture(scope="module")
def sample_reviews() -> list[str]:
    (train, _), (test, _) = data.load_sample()
    return [*train, *test]


def tf_standardize(texts: list[str]) -> list[str]:
    import tensorflow as tf

    return [t.decode() for t in standardize(tf.constant(texts)).numpy()]


def tf_words(texts: list[str]) -> list[list[str]]:
    """The words TextVectorization makes of standardized text (it splits with tf.strings.split)."""
    import tensorflow as tf

    split = tf.strings.split(standardize(tf.constant(texts))).to_list()
    return [[w.decode() for w in words] for words in split]


def test_tf_and_python_cleaning_agree_on_every_sample_review(sample_reviews) -> None:
    assert len(sample_reviews) >= 1000 and any("<br />" in r for r in sample_reviews)
    cleaned = tf_standardize(sample_reviews)
    differ = [(r, p, t) for r, p, t in zip(sample_reviews, map(standardize_text, sample_reviews),
                                           cleaned, strict=True) if p != t]  # fmt: skip
    assert not differ, differ[:3]
    assert not any("<br" in c for c in cleaned)


@pytest.mark.parametrize("text", TRICKY)
def test_tf_and_python_cleaning_agree_on_tricky_text(text: str) -> None:
    assert tf_standardize([text]) == [standardize_text(text)]
    # And the explanations' words are the BiLSTM's tokens.
    assert tf_words([text]) == [words_of(text)]


def test_the_rule_itself() -> None:
    assert standardize_text("Great<br />FILM!<BR>Loved it<br/>10/10") == "great film loved it 1010"
    assert standardize_text("Ébouriffant, non ?") == "ébouriffant non "
    assert "br" not in standardize_text("a<br />b<br/>c<BR>d<Br   />e").split()


def test_the_saved_bilstm_cleans_with_the_rule(trained_model_dir: Path) -> None:
    model = load_keras(trained_model_dir / "model.keras")
    vectorizer = model.get_layer("vectorizer")
    texts = ["A superb film.<br /><br />The acting was GREAT!", *TRICKY[:12]]
    raw = vectorizer(np.asarray(texts, dtype=object).reshape(-1, 1))
    clean = vectorizer(
        np.asarray([standardize_text(t) for t in texts], dtype=object).reshape(-1, 1)
    )
    np.testing.assert_array_equal(np.asarray(raw), np.asarray(clean))
    assert "br" not in vectorizer.get_vocabulary()  # Keras' default rule would leave "br" words


# --- calibration ----------------------------------------------------------------------------


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true probabilities, labels drawn from them, a model's raw output three times too sure)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.05, 0.95, n)
    labels = (rng.uniform(size=n) < truth).astype(int)
    return truth, labels, sigmoid(3.0 * logit(truth))


def test_calibration_lowers_the_error_of_an_overconfident_model_on_held_out_data() -> None:
    _, fit_labels, fit_raw = overconfident(4000, seed=1)
    _, labels, raw = overconfident(4000, seed=2)  # held out: not what it was fitted on
    calibration = Calibration.fit(fit_raw, fit_labels)
    assert calibration.slope == pytest.approx(1 / 3, abs=0.05)
    before = expected_calibration_error(raw, labels)
    after = expected_calibration_error(calibration(raw), labels)
    assert before > 0.1, before  # three times too sure is far off
    assert after < 0.03 and after < before / 4, (before, after)


def test_calibration_leaves_a_calibrated_model_about_as_it_is() -> None:
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.05, 0.95, 4000)
    labels = (rng.uniform(size=4000) < truth).astype(int)
    calibration = Calibration.fit(truth[:2000], labels[:2000])
    assert calibration.slope == pytest.approx(1.0, abs=0.15)
    before = expected_calibration_error(truth[2000:], labels[2000:])
    after = expected_calibration_error(calibration(truth[2000:]), labels[2000:])
    assert after <= before + 0.01, (before, after)


def test_calibration_of_one_class_is_the_identity_and_it_saves(tmp_path: Path) -> None:
    assert Calibration.fit(np.array([0.2, 0.9]), np.array([1, 1])) == Calibration()
    np.testing.assert_allclose(Calibration()(np.array([0.1, 0.5, 0.8])), [0.1, 0.5, 0.8])
    fitted = Calibration(slope=0.5, intercept=-0.25)
    fitted.save(tmp_path)
    assert Calibration.load(tmp_path) == fitted


@pytest.mark.parametrize(
    "probs, labels, expected",
    [
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.0),  # a coin, and half are positive
        ([0.9] * 10, [1] * 10, 0.1),  # 90 % sure, always right
        ([0.1, 0.1, 0.9, 0.9], [0, 0, 1, 1], 0.1),
        ([0.95, 0.95, 0.25, 0.25], [1, 0, 0, 0], 0.5 * 0.45 + 0.5 * 0.25),
        ([1.0, 0.0], [1, 0], 0.0),  # 1.0 falls in the last bin
        ([0.8] * 4, [0] * 4, 0.8),
    ],
)
def test_expected_calibration_error_on_hand_made_cases(probs, labels, expected) -> None:
    assert expected_calibration_error(np.array(probs), np.array(labels)) == pytest.approx(expected)


# --- loading ---------------------------------------------------------------------------------


def test_loading_a_folder_without_a_model_says_what_to_do(tmp_path: Path) -> None:
    Calibration().save(tmp_path)
    with pytest.raises(FileNotFoundError) as raised:
        SentimentModel.load(tmp_path)
    message = str(raised.value)
    assert "neither model.keras nor model.joblib" in message
    assert "python -m imdb_sentiment.train --model-dir" in message


def test_label_of_draws_the_line_at_one_half() -> None:
    assert [label_of(p) for p in (0.0, 0.4999, 0.5, 1.0)] == [
        "negative",
        "negative",
        "positive",
        "positive",
    ]
