"""The two baselines the model must beat, on the same split and by the same metrics.

- `popularity`: every user gets the items most often interacted with in train, minus what they
  have already seen (metrics.evaluate removes those). No personalisation at all: a model that
  cannot beat it has learned nothing about customers.
- `bpr`: matrix factorisation trained for ranking, Bayesian Personalized Ranking (Rendle et al.,
  2009) from the `implicit` library (MIT). It is the model RecBole's published quick-start
  figures for MovieLens-100k come from, so it anchors our figures to theirs.

Each gives a score function, `(user indices) -> (len(users), n_items) scores`, for
metrics.evaluate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recommender.metrics import ScoreFn, interaction_matrix

if TYPE_CHECKING:
    from recommender.data import Interactions


def popularity(train: Interactions) -> ScoreFn:
    """Scores = how many users interacted with the item in train, the same for every user."""
    counts = np.bincount(train.items, minlength=train.n_items).astype(np.float32)

    def score(users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(counts, (len(users), len(counts)))

    return score


def bpr(
    train: Interactions,
    factors: int = 64,
    iterations: int = 100,
    learning_rate: float = 0.01,
    regularization: float = 0.01,
    seed: int = 42,
) -> ScoreFn:
    """Fit implicit's BPR on train's user-item matrix and score by the factors' dot product.

    BPR only asks whether a user interacted with an item, so the matrix holds ones. The defaults
    are implicit's but for 64 factors (RecBole's embedding size), chosen on validation NDCG@10 of
    the sample (seeds 1-3: 0.346, 0.338, 0.331): BPR peaks and then overfits, so its learning rate
    and iterations go together (0.005 needs 150 iterations, 0.02 peaks near 50; 300 iterations
    at 0.01 fall to 0.19). On other data, tune them as the model's are tuned. One thread:
    implicit's BPR updates factors without locks, so several threads give a different model on
    every run; one keeps the figures reproducible for a given seed.
    """
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    model = BayesianPersonalizedRanking(
        factors=factors,
        learning_rate=learning_rate,
        regularization=regularization,
        iterations=iterations,
        num_threads=1,
        random_state=seed,
    )
    model.fit(interaction_matrix(train, train.n_users, train.n_items), show_progress=False)
    # The last item factor is the item's bias and the matching user factor is a constant 1.
    user_factors = np.asarray(model.user_factors)
    item_factors = np.asarray(model.item_factors)

    def score(users: np.ndarray) -> np.ndarray:
        return user_factors[users] @ item_factors.T

    return score
