"""`python -m tests.harness`: what a workshop types, checked through its exit codes and output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.harness import __main__ as cli
from tests.harness import cases

FIXTURES = Path(__file__).parent / "fixtures"


def test_validate_reports_paths_and_exit_code(tmp_path: Path, capsys) -> None:
    assert cli.main(["validate", str(FIXTURES / "manifests")]) == 0
    assert ", 0 problem(s)" in capsys.readouterr().out
    doc = yaml.safe_load((FIXTURES / "katib/experiment.yaml").read_text())
    doc["spec"]["maxTrialCont"] = 3
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc))
    assert cli.main(["validate", str(tmp_path)]) == 1
    assert (
        "spec.maxTrialCont: unknown field (did you mean 'maxTrialCount'?)"
        in capsys.readouterr().out
    )


def test_run_refuses_an_invalid_manifest(tmp_path: Path, capsys) -> None:
    doc = yaml.safe_load((FIXTURES / "katib/experiment.yaml").read_text())
    doc["spec"]["algorithm"]["algorithmName"] = "randomm"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc))
    assert cli.main(["run", str(tmp_path / "bad.yaml"), "--workdir", str(tmp_path / "w")]) == 2
    assert "algorithmName" in capsys.readouterr().out
    assert not (tmp_path / "w").exists()


def test_run_an_experiment_prints_what_kubectl_would(tmp_path: Path, capsys) -> None:
    doc = yaml.safe_load((FIXTURES / "katib/experiment.yaml").read_text())
    doc["spec"]["maxTrialCount"] = 2
    doc["spec"]["parallelTrialCount"] = 2
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(doc))
    assert cli.main(["run", str(tmp_path / "exp.yaml"), "--workdir", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "Best Trial Name" in out and "Parameter Assignments" in out


def test_demo_without_a_case_says_so(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cases, "discover", lambda root=None: [])
    assert cli.main(["demo"]) == 0
    assert "No case study is here yet" in capsys.readouterr().out
    assert cli.main(["demo", "mnist"]) == 1


def test_cases_lists_nothing_yet_or_each_case(capsys) -> None:
    assert cli.main(["cases"]) == 0
    out = capsys.readouterr().out
    found = cases.discover()
    assert ("no case study yet" in out) if not found else all(c.name in out for c in found)


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["deploy"])
    assert exc.value.code == 2


def test_run_a_tfjob_shows_the_replicas_and_the_condition(tmp_path: Path, capsys) -> None:
    manifest = FIXTURES / "jobs/tfjob_chief_ps.yaml"
    assert cli.main(["run", str(manifest), "--workdir", str(tmp_path), "--timeout", "120"]) == 0
    out = capsys.readouterr().out
    assert "TFJobSucceeded" in out
    assert all(name in out for name in ("chief-0", "worker-0", "worker-1", "ps-0"))


def test_run_a_failing_job_exits_1_with_the_log(tmp_path: Path, capsys) -> None:
    doc = yaml.safe_load((FIXTURES / "jobs/tfjob_chief_ps.yaml").read_text())
    del doc["spec"]["tfReplicaSpecs"]["PS"], doc["spec"]["tfReplicaSpecs"]["Worker"]
    doc["spec"]["tfReplicaSpecs"]["Chief"]["template"]["spec"]["containers"][0]["args"] = [
        "--exit",
        "3",
    ]
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    assert cli.main(["run", str(tmp_path / "job.yaml"), "--workdir", str(tmp_path / "w")]) == 1
    out = capsys.readouterr().out
    assert "TFJobFailed" in out and "chief-0 log tail" in out
