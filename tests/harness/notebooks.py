"""Notebooks: jupytext percent-format `.py` sources, the `.ipynb` generated from them, papermill.

The `.py` is the source people edit and review; the `.ipynb` beside it is generated, never
edited. Generation is byte-stable (cell ids come from the cell's position, not jupytext's
random ones), so `drift` can compare the committed notebook with a fresh one strictly. The
case studies' notebook tests run a notebook with `execute`, read it back with `outputs`,
`cell_output`, `stderr_of` and `warnings_in`, and run single cells in-process with `run_cells`.

    python -m tests.harness.notebooks            # regenerate every .ipynb (`make notebooks`)
    python -m tests.harness.notebooks --check    # list notebooks out of date, exit 1 if any
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jupytext
import nbformat

from tests.harness.containers import REPO_ROOT

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
# The kernel papermill starts when "python3" would not run this interpreter.
FALLBACK_KERNEL = "kubeflow-cases-venv"
# What native libraries write straight to the process's stderr (TensorFlow's C++ start-up
# notices, written before its log level applies) goes to the terminal that started Jupyter, not
# into the cell that imported them: the kernel `make lab` starts is configured the same way
# (.venv/etc/ipython/ipython_kernel_config.py). Python's own output is unaffected.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]
SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "build", "dist"}
DIFF_LINES = 40


class NotebookError(RuntimeError):
    """A notebook cell failed; the message names the cell and carries its error."""


def discover(root: Path) -> list[Path]:
    """Every jupytext percent-format source under a `notebooks/` folder below root."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        if Path(folder).name != "notebooks":
            continue
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix == ".py" and "# %%" in path.read_text():
                found.append(path)
    return found


def to_notebook(py: Path) -> nbformat.NotebookNode:
    """The notebook of a percent-format source, with stable cell ids and a kernelspec."""
    nb = jupytext.read(py, fmt="py:percent")
    nb.nbformat, nb.nbformat_minor = 4, 5
    # Only what Jupyter and papermill need: jupytext's own metadata names its version.
    nb.metadata = nbformat.from_dict(
        {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    )
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index}"
    return nb


def render(py: Path) -> str:
    """The exact text of the .ipynb generated from py."""
    return nbformat.writes(to_notebook(py), version=4) + "\n"


def write_ipynb(py: Path) -> Path:
    """Write the .ipynb beside py; unchanged content leaves the file untouched."""
    out = Path(py).with_suffix(".ipynb")
    text = render(py)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out


def drift(py: Path) -> str | None:
    """None when the committed .ipynb is what py generates; else the difference."""
    py = Path(py)
    ipynb = py.with_suffix(".ipynb")
    fix = "run `make notebooks` (python -m tests.harness.notebooks) to regenerate it"
    if not ipynb.exists():
        return f"{ipynb} is missing: {fix}"
    committed, fresh = ipynb.read_text(), render(py)
    if committed == fresh:
        return None
    diff = list(
        difflib.unified_diff(
            committed.splitlines(),
            fresh.splitlines(),
            f"{ipynb} (committed)",
            f"generated from {py.name}",
            lineterm="",
        )
    )
    more = f"\n... {len(diff) - DIFF_LINES} more diff lines" if len(diff) > DIFF_LINES else ""
    return f"{ipynb} is out of date with {py.name}: {fix}\n" + "\n".join(diff[:DIFF_LINES]) + more


def kernel_name() -> str:
    """A kernel that runs this interpreter: "python3" normally, else one installed for it."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    # jupyter_client swaps a bare "python"/"python3" argv[0] for sys.executable.
    major, minor = sys.version_info[:2]
    bare = {"python", f"python{major}", f"python{major}.{minor}"}
    try:
        argv0 = manager.get_kernel_spec("python3").argv[0]
        if argv0 in bare or Path(argv0).resolve() == Path(sys.executable).resolve():
            return "python3"
    except NoSuchKernel:
        pass
    # A kernel found elsewhere (say ~/.local) would run another Python: install our own.
    from ipykernel.kernelspec import install

    install(kernel_name=FALLBACK_KERNEL, prefix=sys.prefix, display_name="Python (case studies)")
    return FALLBACK_KERNEL


def execute(
    source: Path,
    *,
    parameters: Mapping[str, Any],
    cwd: Path,
    output: Path,
    timeout: float = 900,
) -> Path:
    """Run a notebook (.py source or .ipynb) with papermill; raise NotebookError on a failed cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, output = Path(source), Path(output)
    nb = to_notebook(source) if source.suffix == ".py" else nbformat.read(source, as_version=4)
    output.parent.mkdir(parents=True, exist_ok=True)
    # The kernel inherits this environment; an MPLBACKEND=Agg set for scripts (as CI often does)
    # would make plt.show() draw nothing into the notebook, so the kernel gets the inline backend.
    saved = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        papermill.execute_notebook(
            nb,
            str(output),
            parameters=dict(parameters),
            kernel_name=kernel_name(),
            cwd=str(cwd),
            execution_timeout=timeout,
            progress_bar=False,
            extra_arguments=KERNEL_ARGUMENTS,
        )
    except PapermillExecutionError as e:
        raise NotebookError(
            f"{source}: cell In [{e.exec_count}] raised {e.ename}: {e.evalue}\n"
            f"--- the cell ---\n{e.source}\n--- executed notebook: {output} ---"
        ) from e
    finally:
        if saved is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = saved
    return output


def outputs(path: Path) -> tuple[str, int]:
    """All the text a reader sees in an executed notebook, and how many images it shows.

    Printed lines, and every displayed value as text: plain, Markdown or HTML.
    """
    nb = nbformat.read(path, as_version=4)
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("name") == "stdout":
                text.append(out["text"])
            shown = out.get("data", {})
            images += "image/png" in shown
            text += [shown.get(kind, "") for kind in ("text/plain", "text/markdown", "text/html")]
    return "\n".join(text), images


def run_cells(
    source: Path, parameters: Mapping[str, Any], *, through: str, only: bool = False
) -> dict[str, Any]:
    """Run a notebook's code cells in this process, as papermill would, up to and including the
    first cell whose source contains `through` (or only that cell); return the names they set.

    For testing a notebook's own functions and its cluster branches, which cannot run here,
    against what a cluster would answer. `parameters` replace the `parameters` cell's values.
    """
    cells = [c for c in jupytext.read(source).cells if c.cell_type == "code"]
    namespace: dict[str, Any] = dict(parameters) if only else {}
    for cell in cells:
        if only and through not in cell.source:
            continue
        exec(compile(cell.source, f"{Path(source).name}: cell", "exec"), namespace)  # noqa: S102
        if "parameters" in cell.metadata.get("tags", []):
            namespace.update(parameters)
        if through in cell.source:
            return namespace
    raise AssertionError(f"no cell of {source} contains {through!r}")


def cell_output(executed: Path, marker: str) -> dict:
    """The displayed value (its mime bundle) of the executed cell whose source contains marker."""
    for cell in nbformat.read(executed, as_version=4).cells:
        if cell.cell_type == "code" and marker in cell.source:
            for out in cell.outputs:
                if out.output_type in ("execute_result", "display_data"):
                    return out.data
    raise AssertionError(f"no displayed value from the cell with {marker!r}")


def stderr_of(executed: Path) -> str:
    """What the cells wrote to stderr: warnings a reader would see in red."""
    cells = nbformat.read(executed, as_version=4).cells
    return "".join(o.text for c in cells for o in c.get("outputs", []) if o.get("name") == "stderr")


# Python's warning categories (UserWarning, ...), logging's and Spark's WARNING and WARN.
WARNING_TEXT = re.compile(r"Warning|WARN")


def warnings_in(executed: Path) -> list[str]:
    """Every line of an output cell (printed, on stderr, or a displayed value's text) that says
    Warning or WARN: what a reader should never meet in a notebook.

    A value's HTML is left out: scikit-learn's diagram of a model carries the estimators'
    documentation (whose "Warning:" paragraphs are advice, shown on hover), and a warning
    raised while it was drawn would be on stderr.
    """
    found = []
    for index, cell in enumerate(nbformat.read(executed, as_version=4).cells):
        for out in cell.get("outputs", []):
            texts = [out.get("text", ""), out.get("data", {}).get("text/plain", "")]
            found += [
                f"cell {index}: {line.strip()}"
                for text in texts
                for line in text.splitlines()
                if WARNING_TEXT.search(line)
            ]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate every .ipynb from its .py source.")
    parser.add_argument(
        "--root", type=Path, default=REPO_ROOT, help="where to look (default: the repository)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only report notebooks out of date (exit 1 if any)"
    )
    args = parser.parse_args(argv)
    stale = 0
    for py in discover(args.root):
        if args.check:
            problem = drift(py)
            stale += problem is not None
            print(problem.splitlines()[0] if problem else f"ok {py}")
        else:
            print(f"wrote {write_ipynb(py)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
