"""Every case study honours DESIGN.md: files, manifests, pipeline, notebooks, image, smoke training.

Parametrised over the discovered cases; with no case study yet every check is skipped and the
skip reason says so. The checks live in tests/harness/contract.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import cases, contract

CASES = cases.discover()
PARAMS = [pytest.param(c, id=c.name) for c in CASES] or [
    pytest.param(
        None,
        id="no-case",
        marks=pytest.mark.skip(
            reason="no case study yet: a case is a top-level folder with a case.toml"
        ),
    )
]


@pytest.mark.parametrize("check", contract.STATIC_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", PARAMS)
def test_static_contract(case: cases.Case, check) -> None:
    problems = check(case)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("case", PARAMS)
def test_smoke_training_meets_floors(case: cases.Case, tmp_path: Path) -> None:
    problems = contract.smoke_training(case, tmp_path)
    assert not problems, "\n".join(problems)
