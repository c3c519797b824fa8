"""Copies that cannot drift: `# Copied from` markers, their check, and `--fix`.

A case folder must work when copied alone, so code every case needs (the download helper, the
KServe plumbing, the pipeline's deploy step) is repeated in each folder on purpose. mnist holds
the source of every copy; each copy elsewhere says where it came from with a marker, as Hugging
Face transformers does for its copied model code, and this module keeps copies equal to their
source.

The marker is a comment line directly above the copied `def` or `class` (above its decorators),
at the same indentation:

    # Copied from mnist.data.fetch
    def fetch(url: str, dest: Path, sha256: str | None, *, progress: bool = True) -> Path:

    # Copied from mnist.data.fetch with mnist->income_census, MNIST->Adult
    def fetch(...

- `mnist.<module>.<name>`: `<module>` is a dotted path to a `.py` file under mnist/ (for example
  `data`, `serve`, `notebooks.walkthrough`: a notebook's jupytext source is a module like any
  other), `<name>` a top-level function or class in it. A dotted `<name>` reaches inside:
  `mnist.serve.Model.predict` is a method, `mnist.pipeline.deploy.apply_in_cluster` a function
  nested in a KFP component's body (a component must be self-contained, so that is where its
  shared code lives).
- `with a->b, c->d`: plain text replacements applied in order to the source before comparing
  (and before writing, with `--fix`). Keep replaced lines within the line length, or
  `ruff format` will reflow a copy that then differs from its source.
- What is compared is the exact text of the definition, its decorators to its last line, with
  the source's indentation swapped for the copy's. Comments and blank lines inside count.
- A notebook cell that is not a definition (the notebooks' start, say) is copied whole: in the
  source notebook, tag the code cell (`# %% tags=["start"]`); in the copy, put
  `# Copied from mnist.notebooks.walkthrough.start` as the first line of the cell. The cell's
  lines after the marker, up to the next `# %%` (trailing blank lines left out), must equal the
  source cell's lines after its header. A definition of that name wins over a tagged cell.

A marker naming a module, definition or cell that does not exist, or one not followed by a
definition (nor at the start of a cell), is an error. Markers are found as real comments (a
docstring that quotes one is not a marker), in every `*.py` of every case folder.

    python -m tests.harness.copies           report every drift as a unified diff; exit 1 if any
    python -m tests.harness.copies --fix     rewrite each copy from its source (`make fix-copies`)

The contract (tests/test_contract.py) runs `check_case` on every case.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import io
import json
import re
import sys
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.harness.containers import REPO_ROOT

MARKER = re.compile(
    r"^(?P<indent>[ \t]*)# Copied from (?P<target>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)"
    r"(?:[ \t]+with[ \t]+(?P<replacements>.+?))?[ \t]*$"
)
LOOSE_MARKER = re.compile(r"^[ \t]*# Copied from\b")
CELL = re.compile(r"^# %%")
TAGS = re.compile(r"\btags=(\[[^\]]*\])")

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class CopyError(ValueError):
    """A marker that cannot be checked: bad syntax, or a source that does not exist."""


@dataclass
class Snippet:
    """Lines start..end (1-based, inclusive) of a file, written at the given indentation."""

    path: Path
    start: int
    end: int
    indent: str
    lines: list[str]  # the file's lines start..end, without line endings


@dataclass
class Marker:
    """One `# Copied from` comment and the code under it."""

    path: Path
    line: int
    target: str
    replacements: list[tuple[str, str]]
    copy: Snippet


def parse_replacements(text: str | None, where: str) -> list[tuple[str, str]]:
    """`a->b, c->d` as [("a", "b"), ("c", "d")]."""
    if not text:
        return []
    pairs = []
    for item in text.split(","):
        old, arrow, new = item.strip().partition("->")
        if not arrow or not old.strip() or not new.strip():
            raise CopyError(f"{where}: replacement {item.strip()!r} is not of the form old->new")
        pairs.append((old.strip(), new.strip()))
    return pairs


def comment_lines(text: str) -> list[int]:
    """Line numbers of comments that stand alone on their line (not inside strings)."""
    found = []
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    for token in tokens:
        if token.type == tokenize.COMMENT and not token.line[: token.start[1]].strip():
            found.append(token.start[0])
    return found


def definition_starts(tree: ast.AST) -> dict[int, ast.AST]:
    """First line (the first decorator's, if any) -> definition, for every def and class."""
    return {
        min([n.lineno, *(d.lineno for d in n.decorator_list)]): n
        for n in ast.walk(tree)
        if isinstance(n, DEFINITIONS)
    }


def definition_snippet(path: Path, lines: list[str], node: ast.AST) -> Snippet:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    indent = lines[start - 1][: len(lines[start - 1]) - len(lines[start - 1].lstrip())]
    return Snippet(path, start, node.end_lineno, indent, lines[start - 1 : node.end_lineno])


def cell_snippet(path: Path, lines: list[str], first: int) -> Snippet:
    """The cell's lines from `first` (1-based) to the next `# %%`, trailing blank lines left out."""
    end = first - 1
    for number in range(first, len(lines) + 1):
        if CELL.match(lines[number - 1]):
            break
        end = number
    while end >= first and not lines[end - 1].strip():
        end -= 1
    return Snippet(path, first, end, "", lines[first - 1 : end])


def find_markers(path: Path) -> tuple[list[Marker], list[str]]:
    """The markers in one file and the problems with them (syntax, nothing under them)."""
    text = path.read_text()
    lines = text.splitlines()
    try:
        tree = ast.parse(text, str(path))
        comments = comment_lines(text)
    except (SyntaxError, tokenize.TokenError) as err:
        if "# Copied from" not in text:
            return [], []
        return [], [f"{path}: cannot look for copy markers: {err}"]
    starts = definition_starts(tree)
    markers, problems = [], []
    for number in comments:
        line = lines[number - 1]
        if not LOOSE_MARKER.match(line):
            continue
        where = f"{path}:{number}"
        match = MARKER.match(line)
        if match is None:
            problems.append(
                f"{where}: malformed marker {line.strip()!r} (see tests/harness/copies.py)"
            )
            continue
        try:
            replacements = parse_replacements(match["replacements"], where)
        except CopyError as err:
            problems.append(str(err))
            continue
        node = starts.get(number + 1)
        if node is not None:
            copy = definition_snippet(path, lines, node)
        elif number > 1 and CELL.match(lines[number - 2]):
            copy = cell_snippet(path, lines, number + 1)
        else:
            problems.append(
                f"{where}: a copy marker must sit directly above a def or class (above its "
                "decorators) or be the first line of a notebook cell"
            )
            continue
        markers.append(Marker(path, number, match["target"], replacements, copy))
    return markers, problems


def resolve(target: str, root: Path) -> Snippet:
    """The source snippet a marker names, e.g. mnist.data.fetch under root/mnist/data.py."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 1, -1):
        module = root.joinpath(*parts[:split]).with_suffix(".py")
        if module.is_file():
            names = parts[split:]
            break
    else:
        raise CopyError(f"{target}: no module for it under {root} (expected <case>/<module>.py)")
    lines = module.read_text().splitlines()
    body = ast.parse("\n".join(lines), str(module)).body
    node = None
    for depth, name in enumerate(names):
        node = next((n for n in body if isinstance(n, DEFINITIONS) and n.name == name), None)
        if node is None:
            if depth == 0 and len(names) == 1:
                return tagged_cell(module, lines, name, target)
            inside = ".".join(names[:depth]) or module.name
            raise CopyError(f"{target}: {module} has no definition {name!r} in {inside}")
        body = node.body
    return definition_snippet(module, lines, node)


def tagged_cell(module: Path, lines: list[str], name: str, target: str) -> Snippet:
    for number, line in enumerate(lines, start=1):
        tags = TAGS.search(line) if CELL.match(line) else None
        if tags and name in json.loads(tags.group(1)):
            return cell_snippet(module, lines, number + 1)
    raise CopyError(f"{target}: {module} has no definition or tagged cell named {name!r}")


def expected_lines(marker: Marker, source: Snippet) -> list[str]:
    """The source as the copy should read: replacements applied, re-indented to the copy's."""
    text = "\n".join(source.lines)
    for old, new in marker.replacements:
        text = text.replace(old, new)
    wanted = []
    for line in text.split("\n"):
        if not line.strip():
            wanted.append("")
        elif line.startswith(source.indent):
            wanted.append(marker.copy.indent + line[len(source.indent) :])
        else:  # a line of a multi-line string, outside the definition's indentation
            wanted.append(line)
    return wanted


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def drift(marker: Marker, source: Snippet, root: Path) -> str | None:
    """None when the copy equals its source; else a unified diff naming both files and lines."""
    wanted = expected_lines(marker, source)
    copy = [line.rstrip() if not line.strip() else line for line in marker.copy.lines]
    if copy == wanted:
        return None
    with_ = ", ".join(f"{a}->{b}" for a, b in marker.replacements)
    diff = difflib.unified_diff(
        wanted,
        copy,
        fromfile=f"{relative(source.path, root)}:{source.start}-{source.end} ({marker.target}"
        + (f" with {with_})" if with_ else ")"),
        tofile=f"{relative(marker.copy.path, root)}:{marker.copy.start}-{marker.copy.end}",
        lineterm="",
    )
    return (
        f"{relative(marker.path, root)}:{marker.line}: the copy of {marker.target} has drifted "
        "(fix: make fix-copies)\n" + "\n".join(diff)
    )


def python_files(folders: Iterable[Path]) -> list[Path]:
    return sorted(
        p
        for folder in folders
        for p in Path(folder).rglob("*.py")
        if "__pycache__" not in p.parts and not any(part.startswith(".") for part in p.parts)
    )


def check(folders: Iterable[Path], root: Path = REPO_ROOT) -> list[str]:
    """Every problem with the copies in the folders' .py files: drifts (as diffs) and errors."""
    problems = []
    for path in python_files(folders):
        markers, errors = find_markers(path)
        problems += errors
        for marker in markers:
            try:
                found = drift(marker, resolve(marker.target, root), root)
            except (CopyError, SyntaxError) as err:
                found = f"{relative(marker.path, root)}:{marker.line}: {err}"
            if found:
                problems.append(found)
    return problems


def check_case(case_path: Path) -> list[str]:
    """The contract check: the copies in one case folder, sources looked up beside it."""
    return check([case_path], case_path.parent)


def fix(folders: Iterable[Path], root: Path = REPO_ROOT) -> tuple[list[Path], list[str]]:
    """Rewrite every drifted copy from its source; return the files changed and the errors left."""
    changed, errors = [], []
    for path in python_files(folders):
        markers, problems = find_markers(path)
        errors += problems
        lines = path.read_text().splitlines(keepends=True)
        edited = False
        for marker in reversed(markers):  # bottom up, so earlier line numbers stay valid
            try:
                source = resolve(marker.target, root)
            except (CopyError, SyntaxError) as err:
                errors.append(f"{relative(marker.path, root)}:{marker.line}: {err}")
                continue
            if drift(marker, source, root) is None:
                continue
            new = [line + "\n" for line in expected_lines(marker, source)]
            lines[marker.copy.start - 1 : marker.copy.end] = new
            edited = True
        if edited:
            path.write_text("".join(lines))
            changed.append(path)
    return changed, errors


def case_folders(root: Path) -> list[Path]:
    return [p.parent for p in sorted(root.glob("*/case.toml"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness.copies",
        description="Check (or with --fix rewrite) every `# Copied from` copy against its source.",
    )
    parser.add_argument("--fix", action="store_true", help="rewrite drifted copies (default: off)")
    parser.add_argument(
        "--root", type=Path, default=REPO_ROOT, help=f"the repository (default: {REPO_ROOT})"
    )
    parser.add_argument(
        "folders", nargs="*", type=Path, help="folders to look in (default: every case folder)"
    )
    args = parser.parse_args(argv)
    folders = args.folders or case_folders(args.root)
    if not args.fix:
        problems = check(folders, args.root)
        for problem in problems:
            print(problem, file=sys.stderr)
        count = sum(len(find_markers(p)[0]) for p in python_files(folders))
        print(f"{count} copies checked, {len(problems)} problems", file=sys.stderr)
        return 1 if problems else 0
    changed, errors = fix(folders, args.root)
    for path in changed:
        print(f"rewrote copies in {relative(path, args.root)}")
    notebooks = [p for p in changed if p.parent.name == "notebooks"]
    if notebooks:
        from tests.harness import notebooks as nb

        for py in notebooks:
            print(f"regenerated {relative(nb.write_ipynb(py), args.root)}")
    if any(p.name == "pipeline.py" for p in changed):
        print("recompile the pipelines: python -m <case>.pipeline (manifests/pipeline.yaml)")
    for error in errors:
        print(error, file=sys.stderr)
    if not changed and not errors:
        print("every copy matches its source")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
