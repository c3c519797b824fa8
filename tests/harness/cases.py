"""Discover the case studies: every top-level folder with a case.toml.

case.toml tells the harness what it cannot guess: the image, the smoke-sized arguments, the
metric floors, and the overrides that shrink a manifest to laptop size. Example:

    name = "mnist"
    title = "Handwritten digits"
    image = "ghcr.io/kubeflow-cases/mnist:0.1.0"     # as kustomization.yaml names it

    [smoke]
    train_args = ["--sample", "--epochs", "2"]      # after `python -m mnist.train --model-dir DIR`
    timeout = 600                                   # seconds, only to stop a hang

    [smoke.floors]                                  # metrics.json value >= floor
    test_accuracy = 0.90

    [smoke.ceilings]                                # metrics.json value <= ceiling
    test_loss = 0.5

    [floors.distributed]                            # another run's floors, named by the run
    test_accuracy = 0.90

    [smoke.overrides."manifests/tfjob.yaml"]        # dotted paths, applied with --smoke
    "spec.tfReplicaSpecs.Worker.replicas" = 1

Metric floors live in case.toml only, and every test reads them from there:
`case.floor("test_accuracy")` is `[smoke.floors]`, the smoke run of `python -m <case>.train`
that the contract checks; `case.floor("test_accuracy", "distributed")` is `[floors.distributed]`,
one section per other run a case's tests make (the distributed jobs, Katib's trials, the
pipeline, another trainer), since a different run reaches a different level. Ceilings work the
same way (`case.ceiling`, `[smoke.ceilings]`, `[ceilings.<run>]`). Each floor carries a comment
in case.toml saying what chance (or the trivial model) scores and what the run gives here: a floor
a random model could pass is no floor.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.containers import REPO_ROOT

# What DESIGN.md promises a user who copies a case folder.
REQUIRED_FILES = (
    "__init__.py",
    "README.md",
    "case.toml",
    "requirements.txt",
    "Dockerfile",
    ".dockerignore",
    "data.py",
    "model.py",
    "train.py",
    "train_distributed.py",
    "serve.py",
    "pipeline.py",
    "manifests/kustomization.yaml",
    "manifests/pipeline.yaml",
    "notebooks/walkthrough.py",
    "notebooks/walkthrough.ipynb",
    "notebooks/kubeflow.py",
    "notebooks/kubeflow.ipynb",
    "sample/README.md",
    "tests",
)


@dataclass
class Case:
    """One case study folder and its case.toml."""

    path: Path
    config: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def image(self) -> str:
        return self.config["image"]

    @property
    def smoke(self) -> dict[str, Any]:
        return self.config.get("smoke", {})

    @property
    def manifests(self) -> list[Path]:
        """Every Kubernetes YAML of the case (overlays included), not the compiled pipeline.

        Kustomize patch files are partial objects and transformer configurations are not objects
        at all, so both are left out: kustomize itself checks them.
        """
        root = self.path / "manifests"
        files = {p for p in root.rglob("*.yaml") if p.name != "pipeline.yaml"}
        return sorted(files - patch_files(root))

    def floors(self, run: str = "smoke") -> dict[str, float]:
        """The floors of one run: `[smoke.floors]` for "smoke", else `[floors.<run>]`."""
        return self._limits("floors", run)

    def floor(self, metric: str, run: str = "smoke") -> float:
        """One metric's floor (metrics.json value >= floor); a missing one says where to add it."""
        return self._limit("floors", metric, run)

    def ceilings(self, run: str = "smoke") -> dict[str, float]:
        """The ceilings of one run: `[smoke.ceilings]` for "smoke", else `[ceilings.<run>]`."""
        return self._limits("ceilings", run)

    def ceiling(self, metric: str, run: str = "smoke") -> float:
        """One metric's ceiling (metrics.json value <= ceiling)."""
        return self._limit("ceilings", metric, run)

    def _section(self, kind: str, run: str) -> str:
        return f"[smoke.{kind}]" if run == "smoke" else f"[{kind}.{run}]"

    def _limits(self, kind: str, run: str) -> dict[str, float]:
        if run == "smoke":
            found = self.smoke.get(kind, {})
        else:
            found = self.config.get(kind, {}).get(run, {})
        for metric, value in found.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"{self.name}/case.toml {self._section(kind, run)} {metric} = {value!r}: "
                    "expected a number"
                )
        return {metric: float(value) for metric, value in found.items()}

    def _limit(self, kind: str, metric: str, run: str) -> float:
        limits = self._limits(kind, run)
        if metric not in limits:
            raise KeyError(
                f"{self.name}/case.toml has no {metric} in {self._section(kind, run)}: "
                "add it there, with a comment saying what chance scores and what a run gives"
            )
        return limits[metric]

    def overrides_for(self, manifest: Path) -> dict[str, Any]:
        """The smoke overrides case.toml gives for one manifest (by path relative to the case)."""
        rel = manifest.resolve().relative_to(self.path.resolve()).as_posix()
        return dict(self.smoke.get("overrides", {}).get(rel, {}))

    def smoke_train_argv(self, model_dir: Path) -> list[str]:
        """`python -m <case>.train --model-dir DIR` plus the smoke arguments of case.toml."""
        args = self.smoke.get("train_args", ["--sample"])
        return [sys.executable, "-m", f"{self.name}.train", "--model-dir", str(model_dir), *args]

    def missing_files(self) -> list[str]:
        return [f for f in REQUIRED_FILES if not (self.path / f).exists()]


def patch_files(root: Path) -> set[Path]:
    """Files that kustomization.yaml files below root name as patches or `configurations`."""
    found: set[Path] = set()
    for kustomization in root.rglob("kustomization.yaml"):
        config = yaml.safe_load(kustomization.read_text()) or {}
        entries = [p.get("path") for p in config.get("patches", []) if isinstance(p, dict)]
        entries += config.get("patchesStrategicMerge", []) + config.get("patchesJson6902", [])
        entries += config.get("configurations", [])  # e.g. where a CRD names its image
        for entry in entries:
            name = entry.get("path") if isinstance(entry, dict) else entry
            if name:
                found.add(kustomization.parent / name)
    return found


def load_case(path: Path) -> Case:
    """Read one case folder; a case.toml without `image` is an error worth reporting early."""
    config = tomllib.loads((path / "case.toml").read_text())
    if config.get("name", path.name) != path.name:
        raise ValueError(f"{path}/case.toml: name {config['name']!r} differs from the folder name")
    if "image" not in config:
        raise ValueError(
            f"{path}/case.toml: `image` is missing (the image kustomization.yaml names)"
        )
    return Case(path=path, config=config)


def discover(root: Path = REPO_ROOT) -> list[Case]:
    """Every top-level folder of root that holds a case.toml, sorted by name."""
    return [load_case(p.parent) for p in sorted(root.glob("*/case.toml"))]


def case_of(path: Path, root: Path = REPO_ROOT) -> Case | None:
    """The case study a file belongs to, if any (used by `run --smoke`)."""
    path = path.resolve()
    for case in discover(root):
        if path.is_relative_to(case.path.resolve()):
            return case
    return None
