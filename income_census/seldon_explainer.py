"""Fit and save the alibi AnchorTabular explainer that seldondeployment.yaml's explainer loads.

Seldon Core v1's explainer server (`seldonio/alibiexplainer:1.17.1`) loads a fitted alibi
explainer from its `modelUri` with `alibi.saving.load_explainer(path, predictor=...)`, where the
predictor POSTs rows to the model. This script writes that folder (`meta.dill` and
`explainer.dill`) from the background rows `python -m income_census.train` saved:

    python -m venv /tmp/alibi && /tmp/alibi/bin/pip install -r requirements/alibi.txt
    /tmp/alibi/bin/python -m income_census.seldon_explainer --model-dir /mnt/pvc/income \\
        --output /mnt/pvc/income-explainer

It runs in its own environment, not in .venv: alibi 0.9.4 (the last Apache-2.0 release; later
ones are under the Business Source License, never use those) needs numpy<2. dill ties the saved
explainer to the Python and alibi that wrote it, so use the explainer image's versions
(`docker run --rm --entrypoint pip seldonio/alibiexplainer:1.17.1 show alibi`).

Three rules the explainer must follow, and how this script keeps them:
- It sees rows as the model takes them positionally: the 12 features in `model.FEATURES` order,
  categories as their codes in `model.CATEGORIES` (`explain.encode`), numbers split at their
  quartiles as explain.py's anchors are. Its predictor sends such rows to /api/v1.0/predictions.
- It pickles nothing of this repository, since the explainer image has no income_census: alibi's
  save drops the predictor but its samplers keep a reference, so it is fitted with a stand-in
  that pickles by name (`numpy.ones_like`); the server swaps in its own predictor on load.
- It is seeded, so the same background gives the same explainer.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from income_census.explain import encode
from income_census.model import CATEGORIES, FEATURES

BACKGROUND_FILE = "background.csv"  # as income_census.train writes it (not imported: no tqdm)


def fit_explainer(background: pd.DataFrame, seed: int = 0):
    """An alibi AnchorTabular fitted on the background rows in the book's encoding."""
    from alibi.explainers import AnchorTabular  # only in the alibi environment

    categorical = {FEATURES.index(c): list(names) for c, names in CATEGORIES.items()}
    explainer = AnchorTabular(
        np.ones_like, list(FEATURES), categorical_names=categorical, seed=seed
    )
    explainer.fit(encode(background), disc_perc=(25, 50, 75))  # quartiles, as explain.py
    return explainer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path("model"),
        help="the folder income_census.train wrote, with background.csv (default: model)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("income-explainer"),
        help="where meta.dill and explainer.dill go (default: income-explainer)",
    )
    parser.add_argument("--seed", type=int, default=0, help="alibi's seed (default: 0)")
    args = parser.parse_args(argv)
    background = pd.read_csv(args.model_dir / BACKGROUND_FILE, keep_default_na=False)
    fit_explainer(background, args.seed).save(str(args.output))
    print(f"wrote {sorted(p.name for p in args.output.iterdir())} to {args.output}")


if __name__ == "__main__":
    main()
