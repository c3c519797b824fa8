"""Anchor explanations of single predictions, as the book showed them with Seldon's explainer.

An anchor is a short rule, e.g. `marital-status = Separated AND sex = Female`, such that the model
gives the same answer for (almost) everyone the rule covers: `precision` is the fraction of
perturbed rows satisfying the rule that keep the prediction, `coverage` the fraction of all rows
the rule applies to. (Ribeiro, Singh and Guestrin, "Anchors: High-Precision Model-Agnostic
Explanations", AAAI 2018.)

The implementation is the authors' own package, `anchor-exp` (BSD-2-Clause). It works on
numeric arrays with categorical columns as integer codes, which is exactly the book's encoding
(`model.CATEGORIES`): `encode` turns raw rows into that, `decode` turns them back for the
Pipeline. Numeric columns are split into quartiles of the background rows, so rules on them read
like `hours-per-week > 45.00`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from income_census.model import CATEGORIES, FEATURES, UNKNOWN, group_categories

CLASS_NAMES = ("<=50K", ">50K")
BACKGROUND_ROWS = 1000  # training rows the explainer samples perturbations from
DEFAULT_THRESHOLD = 0.95  # the precision an anchor must reach, as in the paper and alibi


def encode(rows: pd.DataFrame) -> np.ndarray:
    """Raw rows -> float array in FEATURES order, categorical values as the book's codes."""
    grouped = group_categories(rows).fillna(UNKNOWN)
    columns = []
    for column in FEATURES:
        if column in CATEGORIES:
            lookup = {name: code for code, name in enumerate(CATEGORIES[column])}
            # A value with no code (a missing value where the column has no `?`) takes code 0;
            # the imputer in the Pipeline treats `?` and unseen values alike.
            columns.append(grouped[column].map(lookup).fillna(0).to_numpy(float))
        else:
            columns.append(pd.to_numeric(rows[column]).to_numpy(float))
    return np.column_stack(columns)


def decode(array: np.ndarray) -> pd.DataFrame:
    """The inverse of `encode`: codes back to category names, one raw row per array row."""
    frame = pd.DataFrame(np.asarray(array), columns=list(FEATURES))
    for column, names in CATEGORIES.items():
        frame[column] = np.asarray(names, dtype=object)[frame[column].astype(int)]
    return frame


class Explainer:
    """Anchors for one fitted Pipeline, sampling perturbations from background rows."""

    def __init__(self, model, background: pd.DataFrame, seed: int = 0) -> None:
        # Imported here, so `encode` also works where anchor-exp is not installed (alibi's venv).
        from anchor.anchor_tabular import AnchorTabularExplainer

        self.model = model
        self.seed = seed
        codes = {FEATURES.index(c): list(names) for c, names in CATEGORIES.items()}
        self.anchors = AnchorTabularExplainer(
            list(CLASS_NAMES), list(FEATURES), encode(background), codes
        )

    def predict_codes(self, array: np.ndarray) -> np.ndarray:
        return self.model.predict(decode(array))

    def explain(self, row: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> dict:
        """The anchor of one raw row: its prediction, the rule, precision and coverage."""
        # anchor-exp samples with NumPy's global generator; seed it so an answer is repeatable.
        np.random.seed(self.seed)
        explanation = self.anchors.explain_instance(
            encode(row)[0], self.predict_codes, threshold=threshold
        )
        prediction = int(explanation.exp_map["prediction"])
        return {
            "prediction": prediction,
            "label": CLASS_NAMES[prediction],
            "anchor": list(explanation.names()),
            # anchor-exp lists a numeric feature once per bound; name each feature once.
            "features": list(dict.fromkeys(FEATURES[i] for i in explanation.features())),
            "precision": float(explanation.precision()),
            "coverage": float(explanation.coverage()),
        }


def background_rows(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Up to BACKGROUND_ROWS training rows (the 12 features), the explainer's sampling pool."""
    count = min(BACKGROUND_ROWS, len(rows))
    chosen = np.random.default_rng(seed).choice(len(rows), count, replace=False)
    return rows.iloc[np.sort(chosen)][list(FEATURES)].reset_index(drop=True)
