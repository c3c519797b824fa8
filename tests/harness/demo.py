"""`make demo`: one case study end to end on its small data, saying what each step did.

Steps, each taken when the case has what it needs: train on the sample, validate the manifests,
run each distributed training job of the default kustomization (TrainJobs, a SparkApplication)
in smoke form, run the Katib Experiment in smoke form, run the pipeline with kfp.local, serve the trained model
and send it the request the case keeps in case.toml (`[smoke.serve] request = "sample/x.json"`).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import time
from pathlib import Path

from tests.harness import manifests, trainer
from tests.harness.cases import Case
from tests.harness.containers import REPO_ROOT


def step(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def train(case: Case, model_dir: Path) -> dict:
    argv = case.smoke_train_argv(model_dir)
    print("$", " ".join(argv[2:]), flush=True)
    subprocess.run(argv, cwd=REPO_ROOT, check=True)
    return json.loads((model_dir / "metrics.json").read_text())


def katib_smoke(case: Case, path: Path, workdir: Path) -> None:
    from tests.harness import katib

    doc = manifests.apply_overrides(manifests.load(path)[0], case.overrides_for(path))
    result = katib.run_experiment(doc, workdir=workdir, runtimes=trainer.runtimes_beside(path))
    print(result.format_trials())
    print(result.describe())


DISTRIBUTED_KINDS = ("TrainJob", "SparkApplication")


def distributed_jobs(case: Case) -> list[Path]:
    """The default kustomization's files that hold a TrainJob or a SparkApplication."""
    import yaml

    listed = yaml.safe_load((case.path / "manifests" / "kustomization.yaml").read_text())
    paths = [case.path / "manifests" / name for name in listed.get("resources") or []]
    return [
        p
        for p in paths
        if p.suffix == ".yaml"
        and any(d.get("kind") in DISTRIBUTED_KINDS for d in manifests.load(p))
    ]


def distributed_smoke(case: Case, path: Path, workdir: Path) -> bool:
    from tests.harness import jobs

    doc = manifests.apply_overrides(manifests.load(path)[0], case.overrides_for(path))
    print(f"{doc['kind']} {doc['metadata']['name']} ({path.name}), smoke overrides from case.toml")
    result = jobs.run_job(doc, workdir=workdir, runtimes=trainer.runtimes_beside(path))
    print(result.summary())
    final = [line for line in result.primary().log().splitlines() if line.startswith("test_")]
    print("\n".join(final[-4:]))
    return result.succeeded


def pipeline_local(case: Case, workdir: Path) -> None:
    from tests.harness import pipelines

    module = importlib.import_module(f"{case.name}.pipeline")
    arguments = dict(case.smoke.get("pipeline", {}).get("arguments", {}))
    run = pipelines.run_local(pipelines.find_pipeline(module), arguments, workdir=workdir)
    print(f"pipeline finished; tasks run: {', '.join(run.tasks())}; artifacts in {run.root}")


def serve_and_query(case: Case, path: Path, model_dir: Path, workdir: Path) -> None:
    from tests.harness import serving

    request = json.loads((case.path / case.smoke["serve"]["request"]).read_text())
    protocol = "V2" if "inputs" in request else "V1"  # an Open Inference body, or KServe's V1
    with serving.serve(path, workdir=workdir, model_dir=model_dir) as server:
        print(f"served at {server.url}; {protocol} request from {case.smoke['serve']['request']}")
        send = server.v2_infer if protocol == "V2" else server.v1_predict
        answer = send(**request)
        print(f"HTTP {answer.status_code}: {answer.text[:500]}")


def run_case(case: Case, workdir: Path) -> int:
    """Run every step the case supports; return 0 when all passed."""
    started = time.monotonic()
    model_dir = workdir / "model"
    step(f"{case.name}: train on the sample")
    metrics = train(case, model_dir)
    print("metrics:", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))

    step(f"{case.name}: validate manifests")
    problems = [e for p in case.manifests for e in manifests.validate_file(p)]
    print("\n".join(problems) or f"{len(case.manifests)} manifest file(s) valid")

    failed = []
    for path in distributed_jobs(case):
        step(f"{case.name}: distributed training, {path.name}, smoke form")
        if not distributed_smoke(case, path, workdir / "jobs" / path.stem):
            failed.append(path.name)

    experiment = case.path / "manifests/katib-experiment.yaml"
    if experiment.exists():
        step(f"{case.name}: Katib Experiment, smoke form")
        katib_smoke(case, experiment, workdir / "katib")

    step(f"{case.name}: pipeline with kfp.local")
    pipeline_local(case, workdir / "pipeline")

    isvc = case.path / "manifests/inferenceservice.yaml"
    if isvc.exists() and "serve" in case.smoke:
        step(f"{case.name}: serve and query")
        serve_and_query(case, isvc, model_dir, workdir / "serving")

    print(f"\n{case.name}: done in {time.monotonic() - started:.0f} s; outputs in {workdir}")
    return 1 if problems or failed else 0
