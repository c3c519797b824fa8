"""The Pipeline's preprocessing, the book's encoding, row validation and anchors, in process."""

from __future__ import annotations

import joblib
import numpy as np
import pandas as pd
import pytest

from income_census import data, explain, rows
from income_census.model import CATEGORIES, FEATURES, GROUPS, build_preprocessor

BOOK_ROW = [39, 7, 1, 1, 1, 1, 4, 1, 2174, 0, 40, 9]  # the book's Seldon request


def test_the_books_request_is_the_first_person_of_adult_data() -> None:
    decoded = rows.parse_rows([BOOK_ROW]).iloc[0].to_dict()
    (train_rows, _), _ = data.load_sample()
    first = data.parse_adult(
        "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, "
        "White, Male, 2174, 0, 40, United-States, <=50K"
    )[0]
    grouped = {c: GROUPS.get(c, {}).get(v, v) for c, v in first.iloc[0][list(FEATURES)].items()}
    assert decoded == grouped


def test_every_fine_category_of_the_data_has_a_group_with_a_code() -> None:
    (train_rows, _), (test_rows, _) = data.load_sample()
    for column, codes in CATEGORIES.items():
        seen = set(pd.concat([train_rows, test_rows])[column].dropna())
        grouped = {GROUPS.get(column, {}).get(v, v) for v in seen}
        assert grouped <= set(codes), (column, grouped - set(codes))
        assert list(codes) == sorted(codes)  # "?" sorts first: the book's alphabetical codes


def test_preprocessing_gives_the_same_columns_whatever_rows_it_saw() -> None:
    (train_rows, _), _ = data.load_sample()
    few = build_preprocessor().fit(train_rows.iloc[:20])
    many = build_preprocessor().fit(train_rows)
    names = list(many.get_feature_names_out())
    assert list(few.get_feature_names_out()) == names
    assert len(names) == 4 + sum(len([c for c in v if c != "?"]) for v in CATEGORIES.values())
    assert not any("fnlwgt" in n or "education-num" in n for n in names)


@pytest.mark.parametrize(
    "row, message",
    [
        (BOOK_ROW[:-1], "expected 12 values"),
        (BOOK_ROW[:1] + ["Astronaut"] + BOOK_ROW[2:], "'workclass' has no category 'Astronaut'"),
        (["old"] + BOOK_ROW[1:], "'age' must be a number"),
        (BOOK_ROW[:4] + [None] + BOOK_ROW[5:], "'occupation' is null"),
        (BOOK_ROW[:2] + [99] + BOOK_ROW[3:], "'education' code 99 is out of range"),
        (BOOK_ROW[:8] + [-5] + BOOK_ROW[9:], "'capital-gain' must be a finite number >= 0"),
        ({"age": 39}, "are missing"),
        ({**dict(zip(FEATURES, BOOK_ROW, strict=True)), "salary": 1}, "unknown column"),
        ("39,7,1", "expected a row"),
    ],
    ids=[
        "short",
        "unknown-category",
        "text-in-number",
        "null",
        "bad-code",
        "negative",
        "missing-column",
        "unknown-column",
        "string-row",
    ],
)
def test_bad_rows_are_named(row, message: str) -> None:
    with pytest.raises(rows.BadRows, match=message):
        rows.parse_rows([row])


def test_empty_and_oversized_batches() -> None:
    with pytest.raises(rows.BadRows, match="at least one row"):
        rows.parse_rows([])
    with pytest.raises(rows.BadRows, match="at most 3 rows"):
        rows.parse_rows([BOOK_ROW] * 4, max_rows=3)


def test_rows_by_name_positional_and_raw_file_names_agree() -> None:
    by_position = rows.parse_rows([BOOK_ROW])
    by_name = rows.parse_rows([dict(zip(FEATURES, BOOK_ROW, strict=True))])
    raw = rows.parse_rows(
        [
            {
                "age": 39,
                "workclass": "State-gov",
                "fnlwgt": 77516,
                "education": "Bachelors",
                "education-num": 13,
                "marital-status": "Never-married",
                "occupation": "Adm-clerical",
                "relationship": "Not-in-family",
                "race": "White",
                "sex": "Male",
                "capital-gain": 2174,
                "capital-loss": 0,
                "hours-per-week": 40,
                "native-country": "United-States",
            }
        ]
    )
    assert by_position.equals(by_name)
    model = build_preprocessor().fit(data.load_sample()[0][0])
    np.testing.assert_array_equal(model.transform(raw), model.transform(by_position))


def test_encode_decode_round_trip() -> None:
    (train_rows, _), _ = data.load_sample()
    frame = train_rows[list(FEATURES)].iloc[:200]
    codes = explain.encode(frame)
    again = explain.decode(codes)
    assert codes.shape == (200, 12)
    # Decoding gives the grouped names, with "?" for unknown: what the Pipeline would see.
    assert explain.encode(again).tolist() == codes.tolist()


@pytest.fixture(scope="module")
def explainer(trained_model_dir) -> explain.Explainer:
    model = joblib.load(trained_model_dir / "model.joblib")
    model.set_params(classifier__n_jobs=1)
    background = pd.read_csv(trained_model_dir / "background.csv", keep_default_na=False)
    return explain.Explainer(model, background)


def test_an_anchor_names_real_features_and_holds(explainer: explain.Explainer) -> None:
    (_, _), (test_rows, _) = data.load_sample()
    row = test_rows.iloc[[1]]  # predicted <=50K: the majority class gets short, crisp anchors
    found = explainer.explain(row)
    assert found["label"] == "<=50K" and found["prediction"] == 0
    assert 1 <= len(found["anchor"]) <= 4, found
    assert set(found["features"]) <= set(FEATURES)
    assert 0.9 <= found["precision"] <= 1.0 and 0.0 <= found["coverage"] <= 1.0, found
    # The rule really holds: every background row it covers, with the rest of the row kept,
    # mostly gets the same answer.
    assert explainer.explain(row) == found  # seeded: the same answer twice
