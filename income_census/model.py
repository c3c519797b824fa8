"""The model: a scikit-learn Pipeline from raw Adult rows to the income class.

    raw rows (adult.data's columns, any order, extra columns ignored)
      -> keep the 12 features (fnlwgt and education-num are dropped)
      -> group fine categories into coarse ones (education, marital status, occupation, country)
      -> numeric: impute the median, scale; categorical: impute the most frequent, one-hot
      -> RandomForest (the book's model) or XGBoost

The whole Pipeline is what gets exported (joblib), so whoever loads it predicts on raw rows.

The book served this model behind Seldon with positional rows whose categorical values are
integer codes, e.g. `[39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]` for the first person of
adult.data. `CATEGORIES` holds that encoding: code i of a column is its i-th category in
alphabetical order, `?` (unknown) first; rows.py decodes such rows.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from income_census.cli import non_negative_int, positive_float, positive_int, seed, thread_count

# The 12 features in the book's order (adult.data's order without fnlwgt and education-num).
FEATURES = (
    "age",
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
)
NUMERIC = ("age", "capital-gain", "capital-loss", "hours-per-week")
CATEGORICAL = tuple(f for f in FEATURES if f not in NUMERIC)
UNKNOWN = "?"  # how the data files write a missing value

# Fine category -> coarse category. Categories not listed are kept as they are.
GROUPS: dict[str, dict[str, str]] = {
    "education": {
        **dict.fromkeys(
            ("Preschool", "1st-4th", "5th-6th", "7th-8th", "9th", "10th", "11th", "12th"),
            "Dropout",
        ),
        "HS-grad": "High School grad",
        "Some-college": "High School grad",
        "Assoc-acdm": "Associates",
        "Assoc-voc": "Associates",
        "Prof-school": "Prof-School",
    },
    "marital-status": {
        "Never-married": "Never-Married",
        "Married-civ-spouse": "Married",
        "Married-AF-spouse": "Married",
        "Married-spouse-absent": "Separated",
        "Divorced": "Separated",
    },
    "occupation": {
        "Adm-clerical": "Admin",
        "Armed-Forces": "Military",
        **dict.fromkeys(
            (
                "Craft-repair",
                "Farming-fishing",
                "Handlers-cleaners",
                "Machine-op-inspct",
                "Transport-moving",
            ),
            "Blue-Collar",
        ),
        "Exec-managerial": "White-Collar",
        "Other-service": "Service",
        "Priv-house-serv": "Service",
        "Prof-specialty": "Professional",
        "Protective-serv": "Other",
        "Tech-support": "Other",
    },
    "native-country": {
        **dict.fromkeys(
            ("Canada", "England", "India", "Ireland", "Scotland"), "British-Commonwealth"
        ),
        **dict.fromkeys(("China", "Hong", "Taiwan"), "China"),
        **dict.fromkeys(("France", "Germany", "Holand-Netherlands", "Italy"), "Euro_1"),
        **dict.fromkeys(("Greece", "Hungary", "Poland", "Portugal"), "Euro_2"),
        **dict.fromkeys(
            (
                "Cuba",
                "Dominican-Republic",
                "El-Salvador",
                "Guatemala",
                "Haiti",
                "Honduras",
                "Jamaica",
                "Mexico",
                "Nicaragua",
                "Puerto-Rico",
                "Trinadad&Tobago",
            ),
            "Latin-America",
        ),
        **dict.fromkeys(("Iran", "Japan", "South", "Outlying-US(Guam-USVI-etc)"), "Other"),
        **dict.fromkeys(("Cambodia", "Laos", "Philippines", "Thailand", "Vietnam"), "SE-Asia"),
        **dict.fromkeys(("Columbia", "Ecuador", "Peru"), "South-America"),
    },
}

# The categories each column has after grouping, `?` first then alphabetical: the book's codes.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "workclass": (
        "?",
        "Federal-gov",
        "Local-gov",
        "Never-worked",
        "Private",
        "Self-emp-inc",
        "Self-emp-not-inc",
        "State-gov",
        "Without-pay",
    ),
    "education": (
        "Associates",
        "Bachelors",
        "Doctorate",
        "Dropout",
        "High School grad",
        "Masters",
        "Prof-School",
    ),
    "marital-status": ("Married", "Never-Married", "Separated", "Widowed"),
    "occupation": (
        "?",
        "Admin",
        "Blue-Collar",
        "Military",
        "Other",
        "Professional",
        "Sales",
        "Service",
        "White-Collar",
    ),
    "relationship": (
        "Husband",
        "Not-in-family",
        "Other-relative",
        "Own-child",
        "Unmarried",
        "Wife",
    ),
    "race": ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"),
    "sex": ("Female", "Male"),
    "native-country": (
        "?",
        "British-Commonwealth",
        "China",
        "Euro_1",
        "Euro_2",
        "Latin-America",
        "Other",
        "SE-Asia",
        "South-America",
        "United-States",
        "Yugoslavia",
    ),
}

# Every value a raw row may hold in a categorical column: fine names, coarse names and `?`.
KNOWN_VALUES: dict[str, frozenset[str]] = {
    column: frozenset(CATEGORIES[column]) | frozenset(GROUPS.get(column, {})) | {UNKNOWN}
    for column in CATEGORICAL
}


def group_categories(rows: pd.DataFrame) -> pd.DataFrame:
    """The categorical columns with fine categories replaced by coarse ones, `?` as missing."""
    grouped = pd.DataFrame(index=rows.index)
    for column in CATEGORICAL:
        groups = GROUPS.get(column, {})
        grouped[column] = rows[column].map(
            lambda v, g=groups: np.nan if v == UNKNOWN else g.get(v, v)
        )
    return grouped


def build_preprocessor() -> ColumnTransformer:
    """Raw rows -> numbers. Columns not among FEATURES (fnlwgt, education-num...) are dropped."""
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    categorical = make_pipeline(
        FunctionTransformer(group_categories, feature_names_out="one-to-one"),
        SimpleImputer(strategy="most_frequent"),
        # Fixed categories (not learned from the rows): every trainer and every distributed
        # worker produces the same columns, whatever rows it saw.
        OneHotEncoder(
            categories=[[c for c in CATEGORIES[col] if c != UNKNOWN] for col in CATEGORICAL],
            handle_unknown="ignore",
            sparse_output=False,
        ),
    )
    return ColumnTransformer(
        [("numeric", numeric, list(NUMERIC)), ("categorical", categorical, list(CATEGORICAL))],
        remainder="drop",
    )


def build_classifier(args: argparse.Namespace):
    """The estimator the flags of `add_model_arguments` describe."""
    if args.model == "random_forest":
        return RandomForestClassifier(
            n_estimators=args.n_estimators,
            max_depth=args.max_depth or None,
            min_samples_leaf=args.min_samples_leaf,
            random_state=args.seed,
            n_jobs=args.n_jobs,
        )
    from xgboost import XGBClassifier  # imported only when asked for: it loads a native library

    return XGBClassifier(
        n_estimators=args.n_estimators,
        max_depth=args.max_depth or 6,
        learning_rate=args.learning_rate,
        min_child_weight=args.min_samples_leaf,
        tree_method="hist",
        random_state=args.seed,
        n_jobs=args.n_jobs,
    )


def build_pipeline(args: argparse.Namespace) -> Pipeline:
    """Preprocessing and classifier in one Pipeline: the artifact that gets exported."""
    return Pipeline([("preprocess", build_preprocessor()), ("classifier", build_classifier(args))])


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model's hyperparameters, as flags so Katib can set them."""
    parser.add_argument(
        "--model",
        choices=("random_forest", "xgboost"),
        default="random_forest",
        help="the classifier (default: random_forest, the book's model)",
    )
    parser.add_argument(
        "--n-estimators", type=positive_int, default=50, help="trees in the ensemble (default: 50)"
    )
    parser.add_argument(
        "--max-depth",
        type=non_negative_int,
        default=0,
        help="deepest tree; 0 means unlimited for random_forest and 6 for xgboost (default: 0)",
    )
    parser.add_argument(
        "--min-samples-leaf",
        type=positive_int,
        default=1,
        help="smallest leaf (random_forest) or min_child_weight (xgboost) (default: 1)",
    )
    parser.add_argument(
        "--learning-rate", type=positive_float, default=0.3, help="xgboost's eta (default: 0.3)"
    )
    parser.add_argument("--seed", type=seed, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--n-jobs",
        type=thread_count,
        default=-1,
        help="threads; -1 means one per CPU (default: -1)",
    )
