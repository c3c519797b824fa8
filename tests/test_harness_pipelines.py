"""The pipelines harness against the tiny pipeline fixture: compile, drift, local runs."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

import json
import os
import tempfile
import types
from pathlib import Path

import pytest
import yaml
from kfp import dsl
from kfp.local import config as local_config

from tests.fixtures.pipelines import tiny
from tests.harness.pipelines import compile_pipeline, compiled_drift, find_pipeline, run_local


@dsl.pipeline(name="tiny")
def tiny_changed(n_rows: int = 50, seed: int = 0, min_accuracy: float = 0.8):
    data = tiny.make_data(n_rows=n_rows, seed=seed)
    tiny.train(data=data.outputs["data"])


def test_compiles(tmp_path: Path) -> None:
    out = compile_pipeline(tiny.tiny_pipeline, tmp_path / "sub" / "tiny.yaml")
    spec = yaml.safe_load(out.read_text())
    assert spec["pipelineInfo"]["name"] == "tiny"
    assert set(spec["root"]["dag"]["tasks"]) == {"make-data", "train", "evaluate", "condition-1"}


def test_committed_yaml_matches_a_fresh_compile() -> None:
    assert compiled_drift(tiny.tiny_pipeline, tiny.COMPILED) is None


def test_an_added_trailing_newline_is_not_drift(tmp_path: Path) -> None:
    copy = tmp_path / "tiny.yaml"
    copy.write_text(tiny.COMPILED.read_text() + "\n\n")
    assert compiled_drift(tiny.tiny_pipeline, copy) is None


def test_a_changed_pipeline_is_drift() -> None:
    message = compiled_drift(tiny_changed, tiny.COMPILED)
    assert message is not None
    assert f"python -m {__name__}" in message  # the module that defines the pipeline
    assert "@@" in message and "+" in message


def test_a_missing_yaml_is_drift(tmp_path: Path) -> None:
    message = compiled_drift(tiny.tiny_pipeline, tmp_path / "pipeline.yaml")
    assert "is missing" in message
    assert "python -m tests.fixtures.pipelines.tiny" in message


def test_runs_locally_end_to_end_and_restores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Away from the repository root, the case package imports only through PYTHONPATH.
    monkeypatch.chdir(tmp_path)
    before = {k: os.environ.get(k) for k in ("PYTHONPATH", "TMPDIR")}
    config_before = local_config.LocalExecutionConfig.instance

    run = run_local(tiny.tiny_pipeline, {"n_rows": 100, "seed": 1}, workdir=tmp_path / "run")

    assert run.tasks() == ["deploy", "evaluate", "make-data", "train"]
    accuracy = run.parameters("evaluate")["Output"]
    assert 0.8 <= accuracy <= 1.0
    assert run.metadata("evaluate", "metrics") == {"accuracy": accuracy}
    assert run.metadata("make-data", "data") == {"rows": 100}
    assert run.artifact("make-data", "data").read_text().startswith("x,y\n")
    assert "cut" in json.loads(run.artifact("train", "model").read_text())
    assert json.loads(run.artifact("deploy", "endpoint").read_text())["accuracy"] == accuracy
    # The tasks' temp dirs went under the work dir, not the system's /tmp.
    assert any((tmp_path / "run" / "tmp").iterdir())

    assert {k: os.environ.get(k) for k in ("PYTHONPATH", "TMPDIR")} == before
    assert local_config.LocalExecutionConfig.instance is config_before
    assert tempfile.gettempdir() == (before["TMPDIR"] or tempfile.gettempdir())


def test_deploy_is_skipped_below_the_threshold(tmp_path: Path) -> None:
    run = run_local(tiny.tiny_pipeline, {"n_rows": 40, "min_accuracy": 1.01}, workdir=tmp_path)
    assert run.ran("evaluate")
    assert not run.ran("deploy")
    with pytest.raises(FileNotFoundError, match="did not run"):
        run.artifact("deploy", "endpoint")


def test_find_pipeline_takes_the_one_pipeline_of_a_module() -> None:
    assert find_pipeline(tiny) is tiny.tiny_pipeline
    with pytest.raises(LookupError, match="one @dsl.pipeline"):
        find_pipeline(types.ModuleType("empty"))
