"""recommender/model.py: the network's shape, the negatives it learns from, the fast scorer.

Negative sampling must never label a purchase as a non-purchase, must draw anew each epoch
(and the same again for the same seed), and the NumPy scorer that ranks every item must give
exactly the Keras model's predictions.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from recommender.data import Interactions
from recommender.model import (
    ItemScorer,
    build_model,
    dropout_rate,
    observed_keys,
    sample_negatives,
    training_examples,
)


def random_interactions(n_users: int, n_items: int, n: int, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    cells = rng.permutation(n_users * n_items)[:n]
    return Interactions(
        (cells // n_items).astype(np.int64),
        (cells % n_items).astype(np.int64),
        rng.uniform(0.1, 1.0, n).astype(np.float32),
        [str(u) for u in range(n_users)],
        [str(i) for i in range(n_items)],
    )


@pytest.fixture(scope="module")
def model():
    return build_model(n_users=7, n_items=11, n_factors=5, dropout=0.3, learning_rate=0.01)


def test_the_network_is_the_books(model) -> None:
    assert {name: (t.shape, t.dtype) for name, t in model.input.items()} == {
        "users": ((None, 1), "int32"),
        "products": ((None, 1), "int32"),
    }
    assert model.layers[-1].name == "predictions"
    assert model.get_layer("user_embedding").get_weights()[0].shape == (7, 5)
    assert model.get_layer("product_embedding").get_weights()[0].shape == (11, 5)
    assert model.get_layer("hidden").get_weights()[0].shape == (10, 5)  # concatenated -> n_factors
    assert model.get_layer("predictions").get_weights()[0].shape == (5, 1)
    assert sum(layer.__class__.__name__ == "Dropout" for layer in model.layers) == 2
    x = {"users": np.array([[0], [6], [3]]), "products": np.array([[0], [10], [5]])}
    predictions = np.asarray(model.predict_on_batch(x))
    assert predictions.shape == (3, 1) and np.isfinite(predictions).all()
    assert model.loss == "mean_squared_error"  # the book's loss, on 0/1 labels


def test_negatives_are_never_observed_pairs() -> None:
    train = random_interactions(20, 15, 200)  # two thirds of all pairs observed
    users, items = sample_negatives(train, 4, np.random.default_rng(1))
    assert len(users) == len(items) == 4 * len(train)
    assert np.array_equal(np.sort(users), np.sort(np.repeat(train.users, 4)))  # 4 per purchase
    observed = set(zip(train.users.tolist(), train.items.tolist(), strict=True))
    assert not observed & set(zip(users.tolist(), items.tolist(), strict=True))
    assert ((items >= 0) & (items < train.n_items)).all()


def test_negatives_cover_the_unseen_items_and_change_every_epoch() -> None:
    train = random_interactions(30, 40, 300)
    rng = np.random.default_rng(7)
    first, second = sample_negatives(train, 4, rng)[1], sample_negatives(train, 4, rng)[1]
    assert not np.array_equal(first, second)  # anew each epoch
    again = sample_negatives(train, 4, np.random.default_rng(7))[1]
    assert np.array_equal(first, again)  # and the same for the same seed
    # Uniform over the items a user has not seen: every item turns up as someone's negative.
    assert set(first.tolist()) == set(range(train.n_items))


def test_a_user_who_has_every_item_gets_no_negatives() -> None:
    full = [(0, i) for i in range(5)] + [(1, 2)]
    train = Interactions(
        np.array([u for u, _ in full]),
        np.array([i for _, i in full]),
        np.ones(len(full), dtype=np.float32),
        ["a", "b"],
        [str(i) for i in range(5)],
    )
    users, items = sample_negatives(train, 3, np.random.default_rng(0))
    assert users.tolist() == [1, 1, 1]
    assert 2 not in items.tolist()


def test_training_examples_label_purchases_one_and_negatives_zero() -> None:
    train = random_interactions(10, 30, 60)
    x, y = training_examples(train, 4, np.random.default_rng(3))
    assert x["users"].shape == x["products"].shape == (300, 1) == (len(y), 1)
    assert x["users"].dtype == np.int32 and y.dtype == np.float32
    keys = x["users"][:, 0].astype(np.int64) * train.n_items + x["products"][:, 0]
    positive = np.isin(keys, observed_keys(train))
    assert np.array_equal(y == 1, positive) and (y[~positive] == 0).all()
    assert positive.sum() == len(train)
    assert not (y[:60] == 1).all()  # shuffled, not purchases first


def test_the_scorer_gives_the_models_predictions_for_every_pair(model) -> None:
    train = random_interactions(7, 11, 30)
    x, y = training_examples(train, 2, np.random.default_rng(0))
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)  # weights away from their initial values
    scorer = ItemScorer(model)
    users = np.array([0, 3, 6, 2])
    grid = {
        "users": np.repeat(users, 11)[:, None],
        "products": np.tile(np.arange(11), len(users))[:, None],
    }
    expected = np.asarray(model.predict_on_batch(grid)).reshape(len(users), 11)
    assert scorer(users).shape == (4, 11)
    np.testing.assert_allclose(scorer(users), expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(expected) > 1e-3  # the pairs' scores differ: the comparison means something


@pytest.mark.parametrize("text", ["0", "0.2", "0.999"])
def test_dropout_rates_from_zero_up_to_one(text: str) -> None:
    assert dropout_rate(text) == float(text)


@pytest.mark.parametrize("text", ["1", "1.5", "-0.1", "nan", "half", ""])
def test_dropout_rates_outside_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="from 0 up to 1"):
        dropout_rate(text)
