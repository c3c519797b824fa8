"""The copy check passes on honest copies, fails on a hand-made drift with a diff, and --fix heals.

tests/fixtures/copies holds a source case (mnist/) and a case whose copies carry every kind of
marker (othercase/); each test works on a temporary copy of it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import cases, contract, copies
from tests.harness.containers import REPO_ROOT

FIXTURE = Path(__file__).parent / "fixtures/copies"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {path}"
    path.write_text(text.replace(old, new))


def test_every_kind_of_marker_is_found_and_clean(repo: Path) -> None:
    found = {
        m.target: m.replacements
        for p in copies.python_files([repo / "othercase"])
        for m in copies.find_markers(p)[0]
    }
    assert found == {
        "mnist.data.Source": [("MNIST", "Other")],
        "mnist.data.fetch": [("mnist", "othercase"), ("MNIST", "Other")],
        "mnist.pipeline.deploy.apply_in_cluster": [],
        "mnist.notebooks.walkthrough.start": [("mnist", "othercase")],
        "mnist.notebooks.walkthrough.show": [],
    }
    assert copies.check_case(repo / "othercase") == []


def test_the_contract_check_passes_then_fails_on_drift(repo: Path) -> None:
    case = cases.load_case(repo / "othercase")
    assert contract.copies_in_step(case) == []
    edit(repo / "othercase/data.py", "/ source.name()", "/ source.url")
    problems = contract.copies_in_step(case)
    assert len(problems) == 1
    assert "the copy of mnist.data.fetch has drifted" in problems[0]


@pytest.mark.parametrize(
    "path, old, new, target, changed_line",
    [
        # A changed body line, in a copy made with replacements.
        ("data.py", "/ source.name()", "/ source.url", "mnist.data.fetch", "source.url"),
        # A decorator is part of the copy.
        ("data.py", "@dataclass(frozen=True)", "@dataclass", "mnist.data.Source", "@dataclass"),
        # A comment inside the copy counts.
        ("data.py", "# Comments and", "# Notes and", "mnist.data.fetch", "# Notes and"),
        # A function nested in a KFP component's body.
        (
            "pipeline.py",
            "        return text",
            "        return text.upper()",
            "apply_in_cluster",
            "text.upper()",
        ),
        # A notebook's tagged cell and a notebook's definition.
        (
            "notebooks/walkthrough.py",
            'print("repository:", root)',
            "print(root)",
            "mnist.notebooks.walkthrough.start",
            "print(root)",
        ),
        (
            "notebooks/walkthrough.py",
            '", ".join',
            '"; ".join',
            "mnist.notebooks.walkthrough.show",
            '"; ".join',
        ),
    ],
    ids=["body", "decorator", "comment", "nested-in-component", "notebook-cell", "notebook-def"],
)
def test_a_drift_fails_with_a_diff_and_fix_restores_it(
    repo: Path, path: str, old: str, new: str, target: str, changed_line: str
) -> None:
    copy = repo / "othercase" / path
    original = copy.read_text()
    edit(copy, old, new)

    problems = copies.check_case(repo / "othercase")
    assert len(problems) == 1, problems
    message = problems[0]
    assert target in message and "make fix-copies" in message
    # A unified diff naming both files with their lines: the source as expected, the copy as is.
    source_file = {"data.py": "mnist/data.py", "pipeline.py": "mnist/pipeline.py"}.get(
        path, "mnist/notebooks/walkthrough.py"
    )
    assert f"--- {source_file}:" in message
    assert f"+++ othercase/{path}:" in message
    assert any(line.startswith("-") and old.strip() in line for line in message.splitlines())
    assert any(line.startswith("+") and changed_line in line for line in message.splitlines())

    assert copies.main(["--fix", "--root", str(repo), str(repo / "othercase")]) == 0
    assert copy.read_text() == original
    assert copies.check_case(repo / "othercase") == []


def test_fix_leaves_code_outside_copies_alone(repo: Path) -> None:
    data = repo / "othercase/data.py"
    edit(data, "return source.url", "return source.url.upper()")  # `own`: no marker
    edit(data, "/ source.name()", "/ source.url")
    changed, errors = copies.fix([repo / "othercase"], repo)
    assert changed == [data] and errors == []
    assert "return source.url.upper()" in data.read_text()
    assert "/ source.name()" in data.read_text()


def test_a_changed_source_makes_its_copies_drift(repo: Path) -> None:
    edit(repo / "mnist/data.py", "    url: str\n", "    url: str  # https only\n")
    problems = copies.check_case(repo / "othercase")
    assert len(problems) == 1 and "mnist.data.Source" in problems[0]
    assert "-    url: str  # https only" in problems[0]


@pytest.mark.parametrize(
    "marker, message",
    [
        ("# Copied from mnist.data.fetched", "has no definition or tagged cell named 'fetched'"),
        ("# Copied from mnist.nowhere.fetch", "no module for it"),
        ("# Copied from mnist.data.Source.missing", "no definition 'missing' in Source"),
        ("# Copied from mnist.data.fetch with mnist=>othercase", "not of the form old->new"),
        ("# Copied from mnist", "malformed marker"),
    ],
    ids=["no-such-name", "no-such-module", "no-such-method", "bad-replacement", "malformed"],
)
def test_a_marker_naming_nothing_is_an_error(repo: Path, marker: str, message: str) -> None:
    edit(
        repo / "othercase/data.py",
        "# Copied from mnist.data.fetch with mnist->othercase, MNIST->Other",
        marker,
    )
    problems = copies.check_case(repo / "othercase")
    assert len(problems) == 1 and message in problems[0], problems
    assert "othercase/data.py:" in problems[0]
    changed, errors = copies.fix([repo / "othercase"], repo)
    assert changed == [] and len(errors) == 1  # --fix cannot guess: it reports and exits 1
    assert copies.main(["--fix", "--root", str(repo), str(repo / "othercase")]) == 1


def test_a_marker_must_sit_on_a_definition(repo: Path) -> None:
    edit(
        repo / "othercase/data.py", "\n\ndef own(", "\n\n# Copied from mnist.data.fetch\n\ndef own("
    )
    problems = copies.check_case(repo / "othercase")
    assert len(problems) == 1 and "directly above a def or class" in problems[0]


def test_the_command_line_reports_and_fixes(repo: Path) -> None:
    edit(repo / "othercase/data.py", "/ source.name()", "/ source.url")
    run = [sys.executable, "-m", "tests.harness.copies", "--root", str(repo)]
    checked = subprocess.run(run, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 1
    assert "+    return Path(cache).expanduser() / source.url" in checked.stderr
    assert "5 copies checked, 1 problems" in checked.stderr
    fixed = subprocess.run([*run, "--fix"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert fixed.returncode == 0 and "rewrote copies in othercase/data.py" in fixed.stdout
    again = subprocess.run(run, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
