"""Full-ranking evaluation of a recommender: hit rate@k and NDCG@k over every unseen item.

For each user with at least one held-out interaction, the model scores every item; the items
the user already interacted with (in train, and in validation when the test split is measured)
are removed, the rest are ranked by score, and the top k are compared with the held-out items.
No sampled negatives: a model is measured against the whole catalogue, as RecBole's
`full` evaluation mode does.

The definitions are RecBole's (https://recbole.io/docs/recbole/recbole.evaluator.metrics.html,
classes `Hit` and `NDCG` of recbole/evaluator/metrics.py), averaged over users U, with R(u) the
user's held-out items and R^(u) the top k of the ranking:

    Hit@k  = 1/|U| sum_u  [R^(u) and R(u) share an item]
    NDCG@k = 1/|U| sum_u  ( sum_{i=1..k} [item at rank i in R(u)] / log2(i + 1) )
                          / ( sum_{i=1..min(|R(u)|, k)} 1 / log2(i + 1) )

Relevance is binary (a held-out purchase counts 1 whatever its count), and the ideal DCG is that
of min(|R(u)|, k) hits at the top, so a user with 3 held-out items and all 3 in the first 3
places scores 1.0. Equal scores are ranked by item index (a stable sort), so a score function
that cannot tell items apart, such as popularity on a tie, gets a reproducible figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    from recommender.data import Interactions

# score_fn(user indices (B,)) -> scores (B, n_items), higher is better
ScoreFn = Callable[[np.ndarray], np.ndarray]


def interaction_matrix(inter: Interactions, n_users: int, n_items: int) -> sparse.csr_matrix:
    """Users x items, 1 where the user interacted with the item (duplicates count once)."""
    ones = np.ones(len(inter.users), dtype=np.float32)
    matrix = sparse.csr_matrix((ones, (inter.users, inter.items)), shape=(n_users, n_items))
    matrix.data[:] = 1.0  # a pair listed twice is still one interaction
    return matrix


def rank_metrics(scores: np.ndarray, seen: np.ndarray, relevant: np.ndarray, k: int) -> tuple:
    """Per-user hit@k and NDCG@k for a batch: scores, seen and relevant are (B, n_items), the
    last two boolean. Returns two float64 arrays of shape (B,)."""
    scores = np.where(seen | np.isnan(scores), -np.inf, scores.astype(np.float64))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties: lower item index first
    hits = np.take_along_axis(relevant, top, axis=1)  # (B, k) boolean; fewer if fewer items
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # rank i (1-based) -> 1 / log2(i + 1)
    dcg = hits @ discounts[: hits.shape[1]]
    ideal_hits = np.minimum(relevant.sum(axis=1), k)
    idcg = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_hits]
    return hits.any(axis=1).astype(np.float64), dcg / idcg


def evaluate(
    score_fn: ScoreFn,
    train: Interactions,
    test: Interactions,
    k: int = 10,
    *,
    also_seen: Interactions | None = None,
    batch_size: int = 256,
) -> dict[str, float]:
    """Mean hit rate@k and NDCG@k over the users that have test interactions.

    `train` (and `also_seen`, the validation split when `test` is the test split) holds what each
    user has already interacted with: those items are never recommended, so they leave the
    ranking. Users are scored `batch_size` at a time, so memory stays at batch x items.
    """
    n_users, n_items = train.n_users, train.n_items
    seen = interaction_matrix(train, n_users, n_items)
    if also_seen is not None:
        seen = seen + interaction_matrix(also_seen, n_users, n_items)
    held_out = interaction_matrix(test, n_users, n_items)
    users = np.flatnonzero(np.diff(held_out.indptr))  # users with at least one test item
    if len(users) == 0:
        raise ValueError("no user has a held-out interaction to rank")
    hit_sum = ndcg_sum = 0.0
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.asarray(score_fn(batch))
        if scores.shape != (len(batch), n_items):
            raise ValueError(f"score_fn gave shape {scores.shape}, not {(len(batch), n_items)}")
        hit, ndcg = rank_metrics(
            scores, seen[batch].toarray() > 0, held_out[batch].toarray() > 0, k
        )
        hit_sum, ndcg_sum = hit_sum + hit.sum(), ndcg_sum + ndcg.sum()
    return {f"hit_rate@{k}": float(hit_sum / len(users)), f"ndcg@{k}": float(ndcg_sum / len(users))}
