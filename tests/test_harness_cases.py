"""Case discovery and the contract's bookkeeping, on throwaway folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import cases


def make_case(root: Path, name: str, toml: str) -> Path:
    folder = root / name
    (folder / "manifests").mkdir(parents=True)
    (folder / "case.toml").write_text(toml)
    return folder


def test_discovers_only_folders_with_case_toml(tmp_path: Path) -> None:
    make_case(tmp_path, "beta", 'image = "x/beta:1"\n')
    make_case(tmp_path, "alpha", 'image = "x/alpha:1"\n')
    (tmp_path / "notacase").mkdir()
    assert [c.name for c in cases.discover(tmp_path)] == ["alpha", "beta"]
    assert cases.discover(tmp_path / "notacase") == []


def test_missing_files_are_listed(tmp_path: Path) -> None:
    folder = make_case(tmp_path, "demo", 'image = "x/demo:1"\n')
    (folder / "train.py").write_text("")
    missing = cases.load_case(folder).missing_files()
    assert "train.py" not in missing
    assert {"Dockerfile", "serve.py", "notebooks/walkthrough.py"} <= set(missing)


def test_bad_case_toml_is_reported(tmp_path: Path) -> None:
    folder = make_case(tmp_path, "demo", 'name = "other"\nimage = "x/demo:1"\n')
    with pytest.raises(ValueError, match="differs from the folder name"):
        cases.load_case(folder)
    (folder / "case.toml").write_text('name = "demo"\n')
    with pytest.raises(ValueError, match="image"):
        cases.load_case(folder)


def test_overrides_and_manifests(tmp_path: Path) -> None:
    folder = make_case(
        tmp_path,
        "demo",
        'image = "x/demo:1"\n[smoke.overrides."manifests/tfjob.yaml"]\n"spec.runPolicy.backoffLimit" = 1\n',
    )
    (folder / "manifests/tfjob.yaml").write_text("kind: TFJob\n")
    (folder / "manifests/pipeline.yaml").write_text("{}\n")
    (folder / "manifests/gpu").mkdir()
    (folder / "manifests/gpu/kustomization.yaml").write_text("{}\n")
    case = cases.load_case(folder)
    assert [p.relative_to(folder).as_posix() for p in case.manifests] == [
        "manifests/gpu/kustomization.yaml",
        "manifests/tfjob.yaml",
    ]
    assert case.overrides_for(folder / "manifests/tfjob.yaml") == {"spec.runPolicy.backoffLimit": 1}
    assert case.overrides_for(folder / "manifests/gpu/kustomization.yaml") == {}
    assert cases.case_of(folder / "manifests/tfjob.yaml", tmp_path).name == "demo"
    assert cases.case_of(tmp_path / "elsewhere.yaml", tmp_path) is None


def test_kustomize_patch_files_are_not_validated_as_objects(tmp_path: Path) -> None:
    folder = make_case(tmp_path, "demo", 'image = "x/demo:1"\n')
    (folder / "manifests/gpu").mkdir()
    (folder / "manifests/gpu/kustomization.yaml").write_text(
        "resources: [../]\npatches:\n  - path: gpu-patch.yaml\n"
    )
    (folder / "manifests/gpu/gpu-patch.yaml").write_text("kind: TFJob\n")
    (folder / "manifests/kustomization.yaml").write_text("configurations: [kustomizeconfig.yaml]\n")
    (folder / "manifests/kustomizeconfig.yaml").write_text("images: [{path: spec/image}]\n")
    names = [p.name for p in cases.load_case(folder).manifests]
    assert names == ["kustomization.yaml", "kustomization.yaml"]  # the base's and gpu's


def test_floors_and_ceilings_are_read_per_run(tmp_path: Path) -> None:
    folder = make_case(
        tmp_path,
        "demo",
        'image = "x/demo:1"\n'
        "[smoke.floors]\ntest_accuracy = 0.9\n"
        "[smoke.ceilings]\ntest_loss = 0.5\n"
        "[floors.distributed]\ntest_accuracy = 0.85\nworkers = 2\n"
        "[ceilings.katib]\nseconds = 60\n",
    )
    case = cases.load_case(folder)
    assert case.floors() == {"test_accuracy": 0.9} and case.floor("test_accuracy") == 0.9
    assert case.floors("distributed") == {"test_accuracy": 0.85, "workers": 2.0}
    assert case.floor("test_accuracy", "distributed") == 0.85
    assert case.ceiling("test_loss") == 0.5 and case.ceiling("seconds", "katib") == 60.0
    assert case.floors("katib") == {} and case.ceilings("distributed") == {}
    # A floor a test asks for and case.toml lacks says where it belongs.
    with pytest.raises(KeyError, match=r"demo/case.toml has no auc in \[floors.distributed\]"):
        case.floor("auc", "distributed")
    with pytest.raises(KeyError, match=r"no test_auc in \[smoke.floors\]"):
        case.floor("test_auc")


def test_a_floor_that_is_not_a_number_is_reported(tmp_path: Path) -> None:
    folder = make_case(
        tmp_path, "demo", 'image = "x/demo:1"\n[floors.katib]\nval_accuracy = "0.7"\n'
    )
    with pytest.raises(
        ValueError, match=r"\[floors.katib\] val_accuracy = '0.7': expected a number"
    ):
        cases.load_case(folder).floors("katib")


def test_every_case_floor_is_a_number() -> None:
    for case in cases.discover():
        for run in ["smoke", *case.config.get("floors", {})]:
            assert case.floors(run), f"{case.name}: {run} has no floors"
