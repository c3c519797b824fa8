"""Write sample/transactions_sample.csv: purchases in the book's `customerId,products` format.

    python recommender/sample/make_sample.py    # rewrites the file, byte for byte the same

No real customer is in it: the purchases are drawn from a known structure, so the sample can be
committed under the repository's licence and a recommender's figures on it mean something:

- 300 products (ids 0..299) in 6 clusters of 50 (product p is in cluster p // 50); inside each
  cluster popularity falls off as a Zipf law (the k-th product weighs 1 / (k + 1)), and the
  clusters' sizes in customers differ (weights 3, 2.5, 2, 1.5, 1.2, 1), so the most popular
  products overall are those of the biggest clusters;
- 1,000 customers (ids 0..1,199, some ids unused, as in the real file), each in one taste group
  that matches one cluster: 85 % of their purchases come from their own cluster, the rest from
  any product, weighted by popularity (the `NOISE` share);
- a customer buys in 1 to 6 baskets (one CSV row each; a customer's later baskets come after
  everyone's first, so customers recur further down the file, as in the real file), a basket
  holds 1 to 8 distinct products, and each product is bought 1, 2 or 3 times in it (written
  repeated: `2|2|2`); one customer in 20 is a heavy buyer with 4 times as many baskets.

A popularity baseline recommends the head of the biggest clusters to everyone; a collaborative
filter can learn each customer's cluster from their other purchases, so it should beat the
baseline clearly. The numbers above are constants below; a test regenerates the file and compares
it byte for byte. Only Python's `random.Random.random` is used (its stream is stable across
Python versions), never NumPy's generators.
"""

from __future__ import annotations

import bisect
import itertools
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "transactions_sample.csv"
SEED = 13
N_CUSTOMERS = 1_000
ID_RANGE = 1_200  # customer ids are drawn from 0..ID_RANGE-1 without repeats
N_CLUSTERS = 6
PER_CLUSTER = 50
GROUP_WEIGHTS = (3.0, 2.5, 2.0, 1.5, 1.2, 1.0)  # how many customers each taste group gets
NOISE = 0.15  # share of purchases from outside the customer's cluster
BASKETS = (1, 6)  # baskets per customer, inclusive
HEAVY_SHARE = 0.05  # customers with HEAVY_FACTOR times as many baskets
HEAVY_FACTOR = 4
BASKET_SIZE = (1, 8)  # distinct products per basket, inclusive
REPEATS = (1, 2, 3)  # times a product is bought in a basket
REPEAT_WEIGHTS = (0.7, 0.2, 0.1)


class Draw:
    """Choices from Python's `random.random` alone, so the stream cannot change with a library."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uniform_int(self, low: int, high: int) -> int:
        return low + min(int(self.rng.random() * (high - low + 1)), high - low)

    def weighted(self, cumulative: list[float]) -> int:
        index = bisect.bisect_right(cumulative, self.rng.random() * cumulative[-1])
        return min(index, len(cumulative) - 1)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


def product_weights() -> list[float]:
    """Popularity of each product: Zipf inside its cluster, times its cluster's group weight."""
    return [
        GROUP_WEIGHTS[p // PER_CLUSTER] / (p % PER_CLUSTER + 1)
        for p in range(N_CLUSTERS * PER_CLUSTER)
    ]


def baskets() -> list[tuple[int, list[int]]]:
    """(customer id, products with repeats) per CSV row, in the order they are written."""
    draw = Draw(SEED)
    weights = product_weights()
    everything = list(itertools.accumulate(weights))
    in_cluster = [
        list(itertools.accumulate(weights[c * PER_CLUSTER : (c + 1) * PER_CLUSTER]))
        for c in range(N_CLUSTERS)
    ]
    groups = list(itertools.accumulate(GROUP_WEIGHTS))
    repeats = list(itertools.accumulate(REPEAT_WEIGHTS))
    pool = list(range(ID_RANGE))
    for i in range(len(pool) - 1, 0, -1):  # Fisher-Yates with our own draws
        j = draw.uniform_int(0, i)
        pool[i], pool[j] = pool[j], pool[i]
    customers = sorted(pool[:N_CUSTOMERS])
    rows: list[list[tuple[int, list[int]]]] = []
    for customer in customers:
        group = draw.weighted(groups)
        n_baskets = draw.uniform_int(*BASKETS)
        if draw.chance(HEAVY_SHARE):
            n_baskets *= HEAVY_FACTOR
        own = []
        for _ in range(n_baskets):
            basket: list[int] = []
            for _ in range(draw.uniform_int(*BASKET_SIZE)):
                if draw.chance(NOISE):
                    product = draw.weighted(everything)
                else:
                    product = group * PER_CLUSTER + draw.weighted(in_cluster[group])
                if product not in basket:
                    basket.append(product)
            own.append(
                (customer, [p for p in basket for _ in range(REPEATS[draw.weighted(repeats)])])
            )
        rows.append(own)
    first = [own[0] for own in rows]
    later = [basket for own in rows for basket in own[1:]]
    for i in range(len(later) - 1, 0, -1):
        j = draw.uniform_int(0, i)
        later[i], later[j] = later[j], later[i]
    return first + later


def write_sample(path: Path = SAMPLE) -> Path:
    """Write the sample CSV (LF line ends, UTF-8, no trailing spaces) to path; return path."""
    lines = ["customerId,products"]
    lines += [f"{customer},{'|'.join(map(str, products))}" for customer, products in baskets()]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


if __name__ == "__main__":
    written = write_sample()
    print(f"wrote {written} ({written.stat().st_size:,} bytes)")
