"""The harness's modules import one another without a cycle.

A cycle (jobs -> batch -> jobs, as there was) works only while one side imports the other
lazily, inside a function; this finds one as soon as it is written.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

HARNESS = Path(__file__).resolve().parent / "harness"


def imports_of(path: Path) -> set[str]:
    """The harness modules that `path` imports, at module level or inside a function (a lazy
    import that dodges a cycle is still one), but not under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for n in ast.walk(statement)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "tests.harness":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.harness."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found |= {
                a.name.split(".")[2] for a in node.names if a.name.startswith("tests.harness.")
            }
    modules = {p.stem for p in HARNESS.glob("*.py")}
    return {name for name in found if name in modules}


def test_no_import_cycle_among_the_harness_modules() -> None:
    graph = {p.stem: imports_of(p) for p in HARNESS.glob("*.py")}
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        for imported in sorted(graph.get(name, ())):
            if imported in path:
                cycles.append(" -> ".join([*path[path.index(imported) :], imported]))
            elif imported not in done:
                visit(imported, [*path, imported])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert cycles == []


def test_jobs_and_batch_share_their_result_classes() -> None:
    from tests.harness import batch, jobs, results

    assert "jobs" not in imports_of(HARNESS / "batch.py")
    assert jobs.JobResult is results.JobResult is batch.JobResult
    assert jobs.ReplicaResult is results.ReplicaResult and jobs.JobFailed is results.JobFailed


def test_each_harness_module_exports_what_the_repository_uses_of_it() -> None:
    """`__all__` names every public name that a case, a test or a benchmark takes from a module."""
    repo = HARNESS.parents[1]
    sources = [
        p
        for p in repo.rglob("*.py")
        if not any(part.startswith(".") or part == "runs" for part in p.relative_to(repo).parts)
    ]
    missing = []
    for module in ("manifests", "jobs"):
        exported = set(importlib.import_module(f"tests.harness.{module}").__all__)
        used: set[str] = set()
        for path in sources:
            if path.parent == HARNESS and path.stem == module:
                continue
            text = path.read_text(errors="replace")
            used |= set(re.findall(rf"\b{module}\.([A-Za-z]\w*)\b", text))
            for names in re.findall(rf"from tests\.harness\.{module} import ([\w, ]+)", text):
                used |= {n.strip() for n in names.split(",")}
        public = {n for n in used if hasattr(importlib.import_module(f"tests.harness.{module}"), n)}
        missing += [f"{module}.{n}" for n in sorted(public - exported)]
    assert missing == []
