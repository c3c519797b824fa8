"""Check the rows a client sends and turn them into the raw rows the Pipeline takes.

Shared by the KServe server (serve.py) and the Seldon model class (seldon_model.py), so both
accept and refuse exactly the same requests. Nothing here imports a serving framework: a bad row
raises `BadRows`, and each server turns that into its own 400 answer.

A row is either
* an object keyed by column name: the 12 features of `model.FEATURES`; adult.data's other
  columns (`fnlwgt`, `education-num`, `income`) may be there too and are ignored; or
* a list of the 12 values in the book's order (`model.FEATURES`), where a categorical value may
  also be its integer code in the book's encoding (`model.CATEGORIES`).

Numeric columns take finite, non-negative numbers. Categorical columns take the names in the
data files (`Adm-clerical`), the grouped names (`Admin`) or `?`, which is how the data files mark
an unknown value. A missing column or a null value is refused: send `?` for unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from income_census.model import CATEGORICAL, CATEGORIES, FEATURES, KNOWN_VALUES, NUMERIC, UNKNOWN

IGNORED_COLUMNS = frozenset({"fnlwgt", "education-num", "income"})
FLOAT32_MAX = 3.4028234663852886e38  # larger numbers overflow the model's float32 input
DEFAULT_MAX_ROWS = 1000
EXAMPLE = (
    '{"age": 39, "workclass": "State-gov", "education": "Bachelors", "marital-status": '
    '"Never-married", "occupation": "Adm-clerical", "relationship": "Not-in-family", '
    '"race": "White", "sex": "Male", "capital-gain": 2174, "capital-loss": 0, '
    '"hours-per-week": 40, "native-country": "United-States"} or the same 12 values as a list, '
    "e.g. [39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]"
)


class BadRows(ValueError):
    """Rows that are not what the model takes; the message says which row, which column, why."""


def parse_rows(rows: object, what: str = "instances", max_rows: int = DEFAULT_MAX_ROWS):
    """A DataFrame of raw rows (FEATURES columns) from a list of row objects or lists."""
    if not isinstance(rows, list):
        raise BadRows(
            f"{what}: expected a list of rows, got {type(rows).__name__}; a row is {EXAMPLE}"
        )
    if not rows:
        raise BadRows(f"{what}: expected at least one row, got an empty list")
    if len(rows) > max_rows:
        raise BadRows(f"{what}: at most {max_rows} rows per request, got {len(rows)}; split it")
    return pd.DataFrame(
        [parse_row(row, f"{what}[{i}]") for i, row in enumerate(rows)], columns=list(FEATURES)
    )


def parse_row(row: object, what: str) -> dict[str, object]:
    """One row, by name or by position, as {column: checked value}."""
    if isinstance(row, Mapping):
        unknown = sorted(set(row) - set(FEATURES) - IGNORED_COLUMNS)
        if unknown:
            raise BadRows(f"{what}: unknown column(s) {unknown}; the columns are {list(FEATURES)}")
        missing = [c for c in FEATURES if c not in row]
        if missing:
            raise BadRows(
                f"{what}: column(s) {missing} are missing; send '?' for an unknown category"
            )
        items = [(c, row[c]) for c in FEATURES]
    elif isinstance(row, Sequence) and not isinstance(row, str | bytes):
        if len(row) != len(FEATURES):
            raise BadRows(
                f"{what}: expected {len(FEATURES)} values in the order {list(FEATURES)}, "
                f"got {len(row)}"
            )
        items = list(zip(FEATURES, row, strict=True))
    else:
        raise BadRows(f"{what}: expected a row (an object or a list), got {type(row).__name__}")
    return {column: check_value(column, value, what) for column, value in items}


def check_value(column: str, value: object, what: str) -> object:
    if value is None:
        raise BadRows(
            f"{what}: '{column}' is null; send a value ('?' for an unknown category)"
            if column in CATEGORICAL
            else f"{what}: '{column}' is null; it needs a number"
        )
    if column in NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRows(f"{what}: '{column}' must be a number, got {value!r}")
        if not math.isfinite(value) or not 0 <= value <= FLOAT32_MAX:
            raise BadRows(
                f"{what}: '{column}' must be a finite number >= 0 (at most {FLOAT32_MAX:.4g}: "
                f"the trees compare float32), got {value!r}"
            )
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        codes = CATEGORIES[column]
        if not 0 <= value < len(codes):
            raise BadRows(
                f"{what}: '{column}' code {value} is out of range 0..{len(codes) - 1} "
                f"(codes stand for {list(codes)})"
            )
        return codes[value]
    if not isinstance(value, str):
        raise BadRows(f"{what}: '{column}' must be a category name or its code, got {value!r}")
    if value.strip() not in KNOWN_VALUES[column]:
        raise BadRows(
            f"{what}: '{column}' has no category {value!r}; expected one of "
            f"{sorted(KNOWN_VALUES[column] - {UNKNOWN})} or '?'"
        )
    return value.strip()
