"""Compile a KFP v2 pipeline, check its committed YAML, and run it on this machine.

`run_local` uses `kfp.local.SubprocessRunner(use_venv=False)`: each task is a
`python -m kfp.dsl.executor_main` subprocess of this interpreter, with this process's cwd and
environment. Only `os.environ` reaches it (not `sys.path`), so the repository root goes on
PYTHONPATH for the case package to import inside a task, and TMPDIR points into the run's
work dir so the tasks' temp dirs are cleaned with it. Every change, kfp.local's global config
included, is undone when the run ends.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from kfp import compiler, local
from kfp.dsl.graph_component import GraphComponent
from kfp.local import config as local_config

from tests.harness.containers import REPO_ROOT

DIFF_LINES = 40


def find_pipeline(module: ModuleType) -> Callable:
    """The one `@dsl.pipeline` function a case's pipeline module defines."""
    found = [v for v in vars(module).values() if isinstance(v, GraphComponent)]
    if len(found) != 1:
        names = [f.name for f in found]
        raise LookupError(f"{module.__name__} should define one @dsl.pipeline, found {names}")
    return found[0]


def compile_pipeline(pipeline_func: Callable, out: Path) -> Path:
    """Compile pipeline_func to the YAML file `out` (what the KFP UI uploads)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func, str(out))
    return out


def compiled_drift(pipeline_func: Callable, committed: Path) -> str | None:
    """None when `committed` is what compiling pipeline_func gives now; else what differs.

    Compared as parsed YAML, so an editor's trailing newline is not drift; the message shows
    the text diff and the command that regenerates the file.
    """
    committed = Path(committed)
    regenerate = f"run `python -m {_module_of(pipeline_func)}` to regenerate it"
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_pipeline(pipeline_func, Path(tmp) / committed.name).read_text()
    if not committed.exists():
        return f"{committed} is missing: {regenerate}"
    old = committed.read_text()
    # A pipeline with Kubernetes platform settings (kfp-kubernetes, e.g. a PVC mount) compiles to
    # two documents: the pipeline, then its platform spec.
    if list(yaml.safe_load_all(old)) == list(yaml.safe_load_all(fresh)):
        return None
    diff = list(
        difflib.unified_diff(
            old.splitlines(),
            fresh.splitlines(),
            f"{committed} (committed)",
            "fresh compile",
            lineterm="",
        )
    )
    more = f"\n... {len(diff) - DIFF_LINES} more diff lines" if len(diff) > DIFF_LINES else ""
    return (
        f"{committed} differs from a fresh compile of the pipeline: {regenerate}\n"
        + "\n".join(diff[:DIFF_LINES])
        + more
    )


def _module_of(pipeline_func: Callable) -> str:
    # @dsl.pipeline wraps the function in a GraphComponent that keeps the original.
    func = getattr(pipeline_func, "pipeline_func", pipeline_func)
    return func.__module__


@dataclass
class LocalRun:
    """What a local run left: the pipeline's outputs and each task's output folder."""

    outputs: dict[str, Any]
    root: Path  # pipeline_root/<pipeline>-<timestamp>

    def task_dir(self, task: str) -> Path | None:
        """The folder of the task named `task` (tasks inside dsl.If sit deeper), or None."""
        found = sorted(p.parent for p in self.root.rglob("executor_output.json"))
        return next((p for p in found if p.name == task), None)

    def ran(self, task: str) -> bool:
        return self.task_dir(task) is not None

    def artifact(self, task: str, name: str) -> Path:
        """The file an output artifact of a task was written to."""
        folder = self.task_dir(task)
        if folder is None:
            raise FileNotFoundError(f"task {task!r} did not run; tasks that ran: {self.tasks()}")
        return folder / name

    def parameters(self, task: str) -> dict[str, Any]:
        """The output parameters of a task (a function's return value is "Output")."""
        return self._executor_output(task).get("parameterValues", {})

    def metadata(self, task: str, name: str) -> dict[str, Any]:
        """The metadata of an output artifact: where Metrics keep their values."""
        artifacts = self._executor_output(task).get("artifacts", {}).get(name, {})
        return artifacts.get("artifacts", [{}])[0].get("metadata", {})

    def _executor_output(self, task: str) -> dict[str, Any]:
        return json.loads((self.artifact(task, "executor_output.json")).read_text())

    def tasks(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.rglob("executor_output.json"))


def run_local(pipeline_func: Callable, arguments: Mapping[str, Any], *, workdir: Path) -> LocalRun:
    """Run the pipeline with kfp.local's SubprocessRunner; raise if a task fails."""
    workdir = Path(workdir).resolve()
    pipeline_root = workdir / "pipeline_root"
    with _local_session(workdir, pipeline_root):
        task = pipeline_func(**arguments)
    runs = sorted(pipeline_root.iterdir(), key=lambda p: p.stat().st_mtime)
    return LocalRun(outputs=dict(task.outputs), root=runs[-1])


@contextmanager
def _local_session(workdir: Path, pipeline_root: Path) -> Iterator[None]:
    tmp, workspace = workdir / "tmp", workdir / "workspace"
    for folder in (tmp, workspace):
        folder.mkdir(parents=True, exist_ok=True)
    saved_env = {k: os.environ.get(k) for k in ("PYTHONPATH", "TMPDIR")}
    saved_tempdir, saved_config = tempfile.tempdir, local_config.LocalExecutionConfig.instance
    try:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), saved_env["PYTHONPATH"]) if p
        )
        os.environ["TMPDIR"] = str(tmp)
        tempfile.tempdir = None  # forget the cached default so this process follows TMPDIR too
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(pipeline_root),
            # kfp.local deletes the workspace after the run; keep it inside workdir.
            workspace_root=str(workspace),
            raise_on_error=True,
        )
        with warnings.catch_warnings():
            # The house style runs the case image's components in this venv on purpose.
            warnings.filterwarnings("ignore", "You may be attemping to run a task", RuntimeWarning)
            yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tempfile.tempdir = saved_tempdir
        local_config.LocalExecutionConfig.instance = saved_config
