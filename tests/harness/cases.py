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

    [smoke.overrides."manifests/tfjob.yaml"]        # dotted paths, applied with --smoke
    "spec.tfReplicaSpecs.Worker.replicas" = 1
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
