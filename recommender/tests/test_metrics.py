"""Hit rate@k and NDCG@k of recommender/metrics.py on cases worked out by hand.

The definitions are RecBole's (see metrics.py); each expected value below is written as the
formula gives it, and a plain per-user loop checks the vectorised code on random data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender.data import Interactions
from recommender.metrics import evaluate


def interactions(pairs: list[tuple[int, int]], n_users: int, n_items: int) -> Interactions:
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    return Interactions(
        users,
        items,
        np.ones(len(pairs), dtype=np.float32),
        [f"u{u}" for u in range(n_users)],
        [f"i{i}" for i in range(n_items)],
    )


def fixed(scores: np.ndarray):
    """A score function that looks each user's row up in a fixed table."""
    return lambda users: scores[users]


def test_a_perfect_ranker_scores_one() -> None:
    train = interactions([(0, 0), (1, 1), (2, 2)], 3, 20)
    test = interactions([(0, 5), (0, 6), (1, 7), (2, 8), (2, 9), (2, 10)], 3, 20)
    relevance = np.zeros((3, 20))
    relevance[test.users, test.items] = 1.0
    assert evaluate(fixed(relevance), train, test) == {"hit_rate@10": 1.0, "ndcg@10": 1.0}


def test_one_held_out_item_at_rank_two() -> None:
    train = interactions([(0, 0)], 1, 5)
    test = interactions([(0, 3)], 1, 5)
    scores = np.array([[0.0, 0.9, 0.1, 0.5, 0.2]])  # unseen order: 1, 3, 4, 2
    result = evaluate(fixed(scores), train, test)
    assert result["hit_rate@10"] == 1.0
    assert result["ndcg@10"] == pytest.approx(1 / math.log2(3))
    assert evaluate(fixed(scores), train, test, k=1) == {"hit_rate@1": 0.0, "ndcg@1": 0.0}


def test_two_held_out_items_at_ranks_one_and_three() -> None:
    train = interactions([(0, 0)], 1, 6)
    test = interactions([(0, 1), (0, 3)], 1, 6)
    scores = np.array([[0.0, 0.9, 0.8, 0.7, 0.1, 0.2]])  # ranks: 1, 2, 3, 5, 4
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)  # both at the top
    assert evaluate(fixed(scores), train, test)["ndcg@10"] == pytest.approx(dcg / idcg)


def test_the_ideal_counts_at_most_k_items() -> None:
    """Three held-out items and k = 2: the two at the top make a perfect list."""
    train = interactions([(0, 0)], 1, 6)
    test = interactions([(0, 1), (0, 2), (0, 3)], 1, 6)
    scores = np.array([[0.0, 0.9, 0.8, 0.1, 0.5, 0.4]])
    assert evaluate(fixed(scores), train, test, k=2) == {"hit_rate@2": 1.0, "ndcg@2": 1.0}


def test_seen_items_leave_the_ranking() -> None:
    """Items in train (and in also_seen) are never recommended, however high they score."""
    train = interactions([(0, 0)], 1, 6)
    valid = interactions([(0, 1)], 1, 6)
    test = interactions([(0, 2)], 1, 6)
    scores = np.array([[0.9, 0.8, 0.7, 0.1, 0.2, 0.3]])
    assert evaluate(fixed(scores), train, test, k=1) == {"hit_rate@1": 0.0, "ndcg@1": 0.0}
    assert evaluate(fixed(scores), train, test, k=1, also_seen=valid) == {
        "hit_rate@1": 1.0,
        "ndcg@1": 1.0,
    }


def test_users_without_held_out_items_are_skipped() -> None:
    train = interactions([(0, 0), (1, 0), (2, 0)], 3, 12)
    test = interactions([(0, 1), (2, 11)], 3, 12)  # user 1 has nothing to find
    scores = np.tile(np.linspace(1.0, 0.0, 12), (3, 1))  # item 1 first, item 11 last
    result = evaluate(fixed(scores), train, test, k=10)
    assert result == {"hit_rate@10": 0.5, "ndcg@10": 0.5}  # user 0: 1, user 2: 0


def test_ties_rank_the_lower_item_index_first() -> None:
    train = interactions([(0, 0)], 1, 30)
    test = interactions([(0, 12)], 1, 30)
    flat = np.ones((1, 30))
    assert evaluate(fixed(flat), train, test)["hit_rate@10"] == 0.0  # 1..10 come first
    test_low = interactions([(0, 3)], 1, 30)
    assert evaluate(fixed(flat), train, test_low)["ndcg@10"] == pytest.approx(1 / math.log2(4))


def test_fewer_items_than_k_and_nan_scores() -> None:
    train = interactions([(0, 0)], 1, 4)
    test = interactions([(0, 2)], 1, 4)
    scores = np.array([[1.0, np.nan, 0.5, 0.7]])  # NaN ranks last, like a seen item
    assert evaluate(fixed(scores), train, test)["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_a_score_function_of_the_wrong_shape_is_refused() -> None:
    train = interactions([(0, 0)], 1, 4)
    test = interactions([(0, 2)], 1, 4)
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda users: np.zeros((len(users), 3)), train, test)


def reference(scores, train, test, also_seen, k):
    """The definitions one user at a time, with Python lists."""
    hits, ndcgs = [], []
    for u in sorted(set(test.users.tolist())):
        seen = {i for uu, i in zip(train.users, train.items, strict=True) if uu == u}
        seen |= {i for uu, i in zip(also_seen.users, also_seen.items, strict=True) if uu == u}
        relevant = {i for uu, i in zip(test.users, test.items, strict=True) if uu == u}
        ranking = sorted((i for i in range(scores.shape[1]) if i not in seen),
                         key=lambda i: (-scores[u, i], i))[:k]  # fmt: skip
        hits.append(float(any(i in relevant for i in ranking)))
        dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(ranking) if i in relevant)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        ndcgs.append(dcg / idcg)
    return np.mean(hits), np.mean(ndcgs)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_vectorised_batches_agree_with_a_loop_per_user(k: int) -> None:
    rng = np.random.default_rng(k)
    n_users, n_items = 37, 25
    cells = rng.permutation(n_users * n_items)[:400]
    pairs = [(int(c) // n_items, int(c) % n_items) for c in cells]
    train = interactions(pairs[:250], n_users, n_items)
    valid = interactions(pairs[250:300], n_users, n_items)
    test = interactions(pairs[300:], n_users, n_items)
    scores = rng.integers(0, 5, (n_users, n_items)).astype(float)  # many ties
    got = evaluate(fixed(scores), train, test, k, also_seen=valid, batch_size=4)
    hit, ndcg = reference(scores, train, test, valid, k)
    assert got[f"hit_rate@{k}"] == pytest.approx(hit)
    assert got[f"ndcg@{k}"] == pytest.approx(ndcg)
    assert 0 < got[f"ndcg@{k}"] < 1
