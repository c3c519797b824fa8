"""The income classifier as a Seldon Core v1 model: the class `seldon-core-microservice` loads.

    seldon-core-microservice income_census.seldon_model.IncomeClassifier --service-type MODEL

run from the repository root (or /app in the image) so that `income_census` imports. This is how
the book served the model: Seldon's protocol, each row the 12 features in the book's order with
the categories as integer codes (`model.CATEGORIES`),

    POST /api/v1.0/predictions
    {"data": {"ndarray": [[39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]]}}
    -> {"data": {"names": ["<=50K", ">50K"], "ndarray": [[0.93, 0.07]]}, "meta": {}}

or by column name, with the categories as the data files write them:

    {"data": {"names": ["age", "workclass", ...], "ndarray": [[39, "State-gov", ...]]}}

Seldon turns `ndarray` into a NumPy array before `predict` sees it, and NumPy gives the whole array
one type: a row that mixes text and numbers arrives as text ("39"), codes among floats arrive as
7.0, and a null makes an object array. `native_rows` undoes that; `rows.parse_rows` then checks
the rows exactly as the KServe server does, and a bad row is a 400 whose message names the column.
The SeldonDeployment's AnchorTabular explainer calls this same endpoint with float arrays of codes,
which is why an integral float in a categorical column counts as its code.

Only scikit-learn, pandas and this package are imported: the class runs in the small seldon-core
environment (requirements/seldon.txt), which has neither KServe nor TensorFlow nor XGBoost.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import joblib
import numpy as np
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.user_model import SeldonNotImplementedError

from income_census.model import CATEGORICAL, FEATURES, NUMERIC
from income_census.rows import BadRows, parse_rows

MODEL_FILE = "model.joblib"  # the whole Pipeline, as income_census.train writes it
CLASS_NAMES = ("<=50K", ">50K")  # predict_proba's columns: the labels are 0 and 1
WHAT = "data.ndarray"  # how error messages name the rows


class IncomeClassifier:
    """Probabilities of the two income classes for rows of the 12 features."""

    def __init__(self, model_dir: str = "/mnt/models") -> None:
        # Seldon passes the graph's `parameters` here as keyword arguments (strings).
        self.model_dir = Path(model_dir)
        self.model = None

    def load(self) -> None:
        """Read the Pipeline; seldon-core-microservice calls this once before serving."""
        path = self.model_dir / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: train first with "
                f"`python -m income_census.train --model-dir {self.model_dir}`"
            )
        model = joblib.load(path)
        if [int(c) for c in model.classes_] != [0, 1]:
            raise ValueError(f"{path}: expected classes [0, 1], got {list(model.classes_)}")
        self.model = model

    def class_names(self) -> list[str]:
        """The names Seldon gives the columns of `predict`'s answer."""
        return list(CLASS_NAMES)

    def predict_raw(self, request: object) -> object:
        """Refuse ragged rows, then let Seldon decode the request and call `predict`.

        Seldon builds the NumPy array before `predict` runs, and rows of different lengths make
        that fail with a 500; checking the JSON first turns them into a 400 like any bad row.
        """
        data = request.get("data") if isinstance(request, dict) else None
        rows = data.get("ndarray") if isinstance(data, dict) else None
        if isinstance(rows, list) and any(isinstance(row, list) for row in rows):
            for i, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != len(rows[0]):
                    length = len(row) if isinstance(row, list) else "not a list"
                    raise SeldonMicroserviceException(
                        f"{WHAT}[{i}]: every row needs the same {len(FEATURES)} values in the "
                        f"order {list(FEATURES)}; row 0 has {len(rows[0])}, row {i} {length}",
                        status_code=400,
                    )
        raise SeldonNotImplementedError("predict_raw only screens requests; predict answers")

    def predict(self, X: object, features_names: list[str] | None = None, meta=None) -> np.ndarray:
        """Class probabilities, one row per input row: columns <=50K and >50K."""
        if self.model is None:
            self.load()
        try:
            rows = parse_rows(native_rows(X, features_names), what=WHAT)
        except BadRows as err:
            raise SeldonMicroserviceException(str(err), status_code=400) from err
        return self.model.predict_proba(rows)


def native_rows(X: object, names: list[str] | None = None) -> object:
    """The rows Seldon decoded into an array, as lists (or dicts, given names) of Python values.

    Anything that is not a list of lists is handed on unchanged for parse_rows to refuse.
    """
    rows = X.tolist() if isinstance(X, np.ndarray) else X
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        return rows
    if not names:
        return [
            [native_value(FEATURES[i] if i < len(FEATURES) else "", v) for i, v in enumerate(row)]
            for row in rows
        ]
    names = [str(name) for name in names]
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise BadRows(f"data.names: column(s) {repeated} appear more than once")
    for i, row in enumerate(rows):
        if len(row) != len(names):
            raise BadRows(
                f"{WHAT}[{i}]: {len(row)} values for the {len(names)} names {names}; "
                f"send one value per name"
            )
    return [
        {name: native_value(name, v) for name, v in zip(names, row, strict=True)} for row in rows
    ]


def native_value(column: str, value: object) -> object:
    """Undo what NumPy did to one value: numbers turned to text, codes turned to floats."""
    if column in NUMERIC and isinstance(value, str):
        number = as_number(value)
        return value if number is None else number
    if column in CATEGORICAL:
        number = as_number(value) if isinstance(value, str) else value
        if isinstance(number, float) and number.is_integer():
            return int(number)
        if isinstance(number, int) and not isinstance(number, bool):
            return number
    return value


def as_number(text: str) -> float | None:
    """The number a text holds ("39", "2174.0"), or None for text that is not one."""
    try:
        return float(text)
    except ValueError:
        return None
