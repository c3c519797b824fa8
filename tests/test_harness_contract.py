"""The contract checks pass on a case that honours DESIGN.md and report each way to break it.

tests/fixtures/contract_case/tinycase is copied to a temporary folder, broken one way per test,
and the one check that should notice is asked.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import cases, contract

FIXTURE = Path(__file__).parent / "fixtures/contract_case/tinycase"


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[cases.Case]:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE, root / "tinycase", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(root))
    yield cases.load_case(root / "tinycase")
    for name in [m for m in sys.modules if m == "tinycase" or m.startswith("tinycase.")]:
        del sys.modules[name]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def test_an_honest_case_passes_every_check(tiny: cases.Case, tmp_path: Path) -> None:
    for check in contract.STATIC_CHECKS:
        assert check(tiny) == [], check.__name__
    assert contract.smoke_training(tiny, tmp_path / "smoke", cwd=tiny.path.parent) == []


def remove_serve(c: cases.Case) -> None:
    (c.path / "serve.py").unlink()


def misspell_field(c: cases.Case) -> None:
    edit(c.path / "manifests/job.yaml", "backoffLimit: 2", "backofLimit: 2")


def bad_override(c: cases.Case) -> None:
    edit(c.path / "case.toml", '"spec.backoffLimit"', '"spec.templat.spec.restartPolicy"')


def latest_image(c: cases.Case) -> None:
    edit(c.path / "manifests/job.yaml", "tinycase:0.1.0", "tinycase:latest")


def other_tag(c: cases.Case) -> None:
    edit(c.path / "manifests/kustomization.yaml", "newTag: 0.1.0", "newTag: 0.2.0")


def other_pin(c: cases.Case) -> None:
    edit(c.path / "requirements.txt", "numpy==2.4.6", "numpy==1.26.4")


def root_dockerfile(c: cases.Case) -> None:
    edit(c.path / "Dockerfile", "python:3.11.11-slim-bookworm", "python:latest")


def privileged(c: cases.Case) -> None:
    edit(c.path / "manifests/job.yaml", "allowPrivilegeEscalation: false", "privileged: false")


def unlimited(c: cases.Case) -> None:
    edit(c.path / "manifests/job.yaml", "            limits: {cpu: 500m, memory: 256Mi}\n", "")


def literal_secret(c: cases.Case) -> None:
    edit(
        c.path / "manifests/job.yaml",
        "          resources:",
        "          env: [{name: AWS_SECRET_ACCESS_KEY, value: abc123}]\n          resources:",
    )


def stale_pipeline(c: cases.Case) -> None:
    edit(c.path / "manifests/pipeline.yaml", "Train the contract fixture.", "Train something else.")


def stale_notebook(c: cases.Case) -> None:
    edit(c.path / "notebooks/walkthrough.py", "seed = 0", "seed = 1")


BREAKS: list[tuple[Callable, Callable, str]] = [
    (remove_serve, contract.required_files, "lacks serve.py"),
    (misspell_field, contract.manifests_valid, "spec.backofLimit: unknown field"),
    (bad_override, contract.manifests_valid, "templat"),
    (latest_image, contract.image_pinned, "uses a :latest image"),
    (privileged, contract.house_rules, "allowPrivilegeEscalation: false"),
    (unlimited, contract.house_rules, "needs resources.limits"),
    (literal_secret, contract.house_rules, "env AWS_SECRET_ACCESS_KEY holds a literal value"),
    (other_tag, contract.image_pinned, "disagree on the image tag"),
    (other_pin, contract.requirements_match, "numpy==1.26.4"),
    (root_dockerfile, contract.dockerfile_lint, "DL3007"),
    (stale_pipeline, contract.pipeline_in_step, "python -m"),
    (stale_notebook, contract.notebooks_in_step, "make notebooks"),
]


@pytest.mark.parametrize(
    ("breaks", "check", "expected"), BREAKS, ids=[b[0].__name__ for b in BREAKS]
)
def test_each_break_is_reported(
    tiny: cases.Case, breaks: Callable, check: Callable, expected: str
) -> None:
    breaks(tiny)
    problems = check(cases.load_case(tiny.path))  # re-read: some breaks edit case.toml
    assert problems and expected in "\n".join(problems), problems


def test_a_floor_the_model_misses_fails_smoke_training(tiny: cases.Case, tmp_path: Path) -> None:
    edit(tiny.path / "case.toml", "accuracy = 0.9", "accuracy = 1.01")
    problems = contract.smoke_training(cases.load_case(tiny.path), tmp_path, cwd=tiny.path.parent)
    assert any("below the floor 1.01" in p for p in problems), problems


def test_a_crashing_trainer_fails_smoke_training_with_its_output(
    tiny: cases.Case, tmp_path: Path
) -> None:
    edit(
        tiny.path / "train.py",
        "args = parser.parse_args()",
        "args = parser.parse_args()\n    raise SystemExit('no data')",
    )
    problems = contract.smoke_training(tiny, tmp_path, cwd=tiny.path.parent)
    assert problems and "no data" in problems[0]
