"""The CT-scan KFP pipeline: its committed YAML, and one local run on the phantom.

    .venv/bin/python -m pytest ct_scans/tests/test_pipeline.py -q

One kfp.local run (a subprocess per task; the SVD step starts Spark in local mode), shared by
the tests below. The image is a compile-time setting (`--image`, CT_SCANS_IMAGE); compiling with
another one is checked here too.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from ct_scans import data, pipeline
from tests.harness import cases
from tests.harness.pipelines import LocalRun, compiled_drift, find_pipeline, run_local

# The resource requests are for the cluster; kfp.local says it ignores them, once per task.
pytestmark = pytest.mark.filterwarnings("ignore:Task .* no effect in the current local runner")

STEPS = ["dicom-to-matrix", "load-scan", "svd-on-spark", "visualize"]
CASE = Path(pipeline.__file__).parent
FLOORS = cases.load_case(CASE).floors()  # train.py's smoke run: the same flags and scan


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")  # Spark binds a non-loopback address otherwise
        return run_local(pipeline.ct_pipeline, {}, workdir=tmp_path_factory.mktemp("pipeline"))


def test_every_step_ran(run: LocalRun) -> None:
    assert run.tasks() == STEPS


def test_the_phantom_goes_through_dicom_into_the_matrix(run: LocalRun) -> None:
    assert run.metadata("load-scan", "scan") == {"source": "phantom", "files": 48}
    series = data.read_series(run.artifact("load-scan", "scan") / "series")
    assert series.volume.shape == data.PHANTOM_SHAPE
    assert run.metadata("dicom-to-matrix", "matrix") == {
        "slices": 48,
        "rows": 64,
        "cols": 64,
        "skipped": 0,
    }
    arrays = np.load(run.artifact("dicom-to-matrix", "matrix"))
    np.testing.assert_array_equal(arrays["matrix"], data.to_matrix(series.volume))
    np.testing.assert_array_equal(arrays["truth"], data.phantom())


def test_spark_svd_denoises_as_the_single_process_trainer(run: LocalRun) -> None:
    metrics = run.metadata("svd-on-spark", "metrics")
    # train.py's figures for the same flags, so train.py's floors.
    assert metrics["psnr_gain"] >= FLOORS["psnr_gain"], metrics
    assert metrics["psnr_drop_30"] < metrics["psnr_noisy"], metrics
    basis = np.load(run.artifact("svd-on-spark", "basis") / "basis.npz")
    assert basis["u"].shape == (64 * 64, 40) and basis["shape"].tolist() == [64, 64]


def test_the_html_report_shows_slices_and_the_psnr_curve(run: LocalRun) -> None:
    page = run.artifact("visualize", "report").read_text()
    assert page.count("<img src='data:image/png;base64,") == 2
    shown = dict(re.findall(r"<tr><td>PSNR at ([\d.]+)%</td><td>([\d.]+) dB</td></tr>", page))
    assert set(shown) == {"0.1", "1", "5", "10", "30"}
    assert float(shown["5"]) > float(shown["0.1"]) > float(shown["30"])


def test_committed_yaml_is_in_step_with_pipeline_py(tmp_path: Path) -> None:
    assert find_pipeline(pipeline) is pipeline.ct_pipeline
    assert compiled_drift(pipeline.ct_pipeline, pipeline.COMPILED) is None
    out = tmp_path / "sub" / "pipeline.yaml"
    pipeline.main(["--output", str(out)])
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(pipeline.COMPILED.read_text())


def test_every_component_uses_the_case_image_and_installs_nothing() -> None:
    spec = yaml.safe_load(pipeline.COMPILED.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(executors) == [f"exec-{step}" for step in STEPS]
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == pipeline.IMAGE, name
        command = " ".join(container["command"] + container.get("args", []))
        assert "pip install" not in command, f"{name} installs packages at run time"


def test_the_default_image_is_the_one_the_kustomization_names() -> None:
    assert cases.load_case(CASE).image == pipeline.DEFAULT_IMAGE
    kustomization = yaml.safe_load((CASE / "manifests" / "kustomization.yaml").read_text())
    name, _, tag = pipeline.DEFAULT_IMAGE.rpartition(":")
    assert {"name": name, "newTag": tag} in kustomization["images"]
    # The committed YAML is compiled with the default: a test run with CT_SCANS_IMAGE set would
    # compare another image against it.
    assert pipeline.IMAGE == pipeline.DEFAULT_IMAGE, f"unset {pipeline.IMAGE_VARIABLE} to test"


def test_compiling_with_another_image_puts_it_in_every_step(tmp_path: Path) -> None:
    image = "registry.example.com/team/ct-scans:1.2.3"
    out = tmp_path / "pipeline.yaml"
    pipeline.main(["--image", image, "--output", str(out)])
    executors = yaml.safe_load(out.read_text())["deploymentSpec"]["executors"]
    assert sorted(executors) == [f"exec-{step}" for step in STEPS]
    assert {name: e["container"]["image"] for name, e in executors.items()} == {
        name: image for name in executors
    }
    assert pipeline.DEFAULT_IMAGE not in out.read_text()


def test_an_empty_image_is_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        pipeline.main(["--image", "", "--output", "unused.yaml"])
    assert exit_.value.code == 2
    assert "--image needs an image name" in capsys.readouterr().err
