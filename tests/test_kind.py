"""The cluster lane: each case's training job, Experiment and InferenceService on kind.

Runs only with `pytest --kind` (make kind-test) against the cluster from tests/kind/up.sh.
"""

from __future__ import annotations

import pytest
import yaml

from tests.harness import cases, kind

pytestmark = pytest.mark.kind

RESOURCES = [
    pytest.param(case, path, id=f"{case.name}-{path.stem}")
    for case in cases.discover()
    for path in case.manifests
    if any(d.get("kind") in kind.DONE for d in yaml.safe_load_all(path.read_text()) if d)
]


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    problem = kind.cluster_problem()
    if problem:
        pytest.skip(problem)


@pytest.mark.parametrize(
    ("case", "path"),
    RESOURCES or [pytest.param(None, None, marks=pytest.mark.skip(reason="no case study yet"))],
)
def test_resource_finishes_on_cluster(case: cases.Case, path) -> None:
    doc = next(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") in kind.DONE)
    kind.apply(path)
    try:
        assert kind.wait_done(doc["kind"], doc["metadata"]["name"]) == kind.DONE[doc["kind"]][0]
    finally:
        kind.kubectl("delete", "-f", str(path), "--ignore-not-found", check=False)
