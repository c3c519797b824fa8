"""Root pytest configuration: the --kind option and the fixtures that hand out the harness."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import cases as harness_cases

REPO_ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kind",
        action="store_true",
        default=False,
        help="run the cluster lane against the kind cluster started by tests/kind/up.sh",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--kind"):
        return
    skip = pytest.mark.skip(
        reason="cluster lane: start a cluster with tests/kind/up.sh, then pytest --kind"
    )
    for item in items:
        if "kind" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def all_cases() -> list[harness_cases.Case]:
    return harness_cases.discover(REPO_ROOT)
