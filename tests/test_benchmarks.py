"""The benchmark runner: one JSON line per figure, machine facts added, malformed figures refused."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from benchmarks import __main__ as runner


def fake_benchmark(monkeypatch: pytest.MonkeyPatch, figures: list[dict]) -> None:
    module = types.ModuleType("benchmarks.fake")
    module.run = lambda: iter(figures)
    monkeypatch.setitem(sys.modules, "benchmarks.fake", module)


def test_figures_are_printed_and_appended(monkeypatch, tmp_path: Path, capsys) -> None:
    fake_benchmark(monkeypatch, [{"name": "x", "value": 1.5, "unit": "s", "compared_with": "y"}])
    results = tmp_path / "r.jsonl"
    assert runner.run(["fake"], results) == 1
    assert runner.run(["fake"], results) == 1
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(lines) == 2
    assert lines[0]["benchmark"] == "fake" and lines[0]["value"] == 1.5
    assert lines[0]["machine"]["cores"] >= 1
    assert json.loads(capsys.readouterr().out.splitlines()[0])["name"] == "x"


def test_figure_without_comparison_is_refused(monkeypatch, tmp_path: Path) -> None:
    fake_benchmark(monkeypatch, [{"name": "x", "value": 1.5, "unit": "s"}])
    with pytest.raises(ValueError, match="compared_with"):
        runner.run(["fake"], tmp_path / "r.jsonl")


def test_unknown_name_is_an_error(capsys) -> None:
    assert runner.main(["no_such_benchmark"]) == 2
    assert "harness_job_overhead" in capsys.readouterr().err
