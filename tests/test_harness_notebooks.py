"""The notebooks harness against the hello fixture: generation, drift, papermill runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from tests.harness import notebooks
from tests.harness.notebooks import NotebookError, discover, drift, execute, write_ipynb

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"
HELLO = FIXTURES / "hello.py"


@pytest.fixture
def hello_copy(tmp_path: Path) -> Path:
    """hello.py and its .ipynb in a notebooks/ folder of their own, free to change."""
    folder = tmp_path / "case" / "notebooks"
    folder.mkdir(parents=True)
    shutil.copy(HELLO, folder)
    shutil.copy(HELLO.with_suffix(".ipynb"), folder)
    return folder / "hello.py"


def test_discovers_percent_sources_only(hello_copy: Path) -> None:
    (hello_copy.parent / "helper.py").write_text("x = 1\n")
    assert discover(hello_copy.parents[2]) == [hello_copy]
    assert HELLO in discover(Path(__file__).parent)


def test_notebook_has_stable_ids_a_kernelspec_and_the_parameters_tag() -> None:
    nb = notebooks.to_notebook(HELLO)
    assert [c.id for c in nb.cells] == [f"cell-{i}" for i in range(len(nb.cells))]
    assert nb.metadata.kernelspec.name == "python3"
    assert [c.metadata.get("tags") for c in nb.cells if c.cell_type == "code"][0] == ["parameters"]
    nbformat.validate(nb)


def test_write_ipynb_is_byte_stable(hello_copy: Path) -> None:
    hello_copy.with_suffix(".ipynb").unlink()
    first = write_ipynb(hello_copy).read_bytes()
    second = write_ipynb(hello_copy).read_bytes()
    assert first == second == HELLO.with_suffix(".ipynb").read_bytes()


def test_committed_fixture_is_in_sync() -> None:
    assert drift(HELLO) is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("n_points = 5", "n_points = 6"),  # a code line
        ("# The squares of the first", "# The cubes of the first"),  # a markdown line
    ],
)
def test_drift_catches_a_changed_line(hello_copy: Path, old: str, new: str) -> None:
    text = hello_copy.read_text()
    assert old in text
    hello_copy.write_text(text.replace(old, new))
    message = drift(hello_copy)
    assert message is not None
    assert "make notebooks" in message
    assert new.lstrip("# ") in message  # the diff shows the new line


def test_drift_catches_a_missing_notebook(hello_copy: Path) -> None:
    hello_copy.with_suffix(".ipynb").unlink()
    assert "is missing" in drift(hello_copy)


def test_main_regenerates_and_checks(hello_copy: Path, capsys: pytest.CaptureFixture) -> None:
    root = hello_copy.parents[2]
    hello_copy.write_text(hello_copy.read_text().replace("n_points = 5", "n_points = 7"))
    assert notebooks.main(["--root", str(root), "--check"]) == 1
    assert notebooks.main(["--root", str(root)]) == 0
    assert notebooks.main(["--root", str(root), "--check"]) == 0
    assert "out of date" in capsys.readouterr().out


@pytest.mark.notebook
def test_execute_injects_the_parameter(tmp_path: Path) -> None:
    out = execute(HELLO, parameters={"n_points": 4}, cwd=tmp_path, output=tmp_path / "out.ipynb")
    nb = nbformat.read(out, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    printed = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "sum of squares=14" in printed  # 0 + 1 + 4 + 9, not the default's 30
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert (tmp_path / "squares.png").exists()  # the plot was saved in cwd


@pytest.mark.notebook
def test_a_failing_cell_raises_with_its_error(hello_copy: Path, tmp_path: Path) -> None:
    hello_copy.write_text(
        hello_copy.read_text().replace(
            "squares = [i * i", 'raise ValueError("no squares today")\nsquares = [i * i'
        )
    )
    with pytest.raises(NotebookError, match="ValueError: no squares today") as failure:
        execute(hello_copy, parameters={}, cwd=tmp_path, output=tmp_path / "failed.ipynb")
    assert 'raise ValueError("no squares today")' in str(failure.value)
    assert (tmp_path / "failed.ipynb").exists()  # kept for the post-mortem


def test_outputs_collects_what_a_reader_sees(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="printed\n"),
        nbformat.v4.new_output(
            "display_data", data={"text/markdown": "# shown", "image/png": "iVBORw0KGgo="}
        ),
        nbformat.v4.new_output("execute_result", data={"text/html": "<b>html</b>"}),
        nbformat.v4.new_output("stream", name="stderr", text="a warning\n"),
    ]
    nb.cells = [cell]
    path = tmp_path / "done.ipynb"
    nbformat.write(nb, path)
    text, images = notebooks.outputs(path)
    assert images == 1
    assert "printed" in text and "# shown" in text and "<b>html</b>" in text
    assert "a warning" not in text  # stderr is not what the notebook shows a reader
