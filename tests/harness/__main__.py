"""Command line: see what a cluster would show, with no cluster.

python -m tests.harness cases                      the discovered case studies
python -m tests.harness validate PATH...           strict validation of manifests (files or folders)
python -m tests.harness run MANIFEST [--smoke]     run a training job, an Experiment or a server
python -m tests.harness demo [CASE] [-v]           a case end to end on its small data
python -m tests.harness notebooks                  regenerate every .ipynb from its .py source
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tests.harness import cases, manifests
from tests.harness.containers import REPO_ROOT
from tests.harness.trainer import runtimes_beside

TRAINING_KINDS = {"TFJob", "PyTorchJob", "XGBoostJob", "TrainJob", "SparkApplication", "Job"}


def yaml_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():  # kustomize's patches and configurations are not objects
            skipped = cases.patch_files(path)
            found += sorted(
                p for p in path.rglob("*.yaml") if p.name != "pipeline.yaml" and p not in skipped
            )
        else:
            found.append(path)
    return found


def cmd_cases(args: argparse.Namespace) -> int:
    found = cases.discover()
    if not found:
        print("no case study yet: a case study is a top-level folder with a case.toml")
    for case in found:
        print(f"{case.name:16} {case.config.get('title', '')}  ({case.image})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    files = yaml_files(args.paths)
    errors = [e for path in files for e in manifests.validate_file(path)]
    for error in errors:
        print(error)
    print(f"{len(files)} file(s), {len(errors)} problem(s)")
    return 1 if errors else 0


def default_workdir(name: str) -> Path:
    return REPO_ROOT / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def smoke_doc(path: Path, doc: dict) -> dict:
    case = cases.case_of(path)
    overrides = case.overrides_for(path) if case else {}
    if not overrides:
        print(f"--smoke: no overrides for {path} in a case.toml; running it as it is")
    return manifests.apply_overrides(doc, overrides)


def cmd_run(args: argparse.Namespace) -> int:
    docs = manifests.load(args.manifest)
    if args.smoke:
        docs = [smoke_doc(args.manifest, d) for d in docs]
    runnable = [
        d for d in docs if d.get("kind") in TRAINING_KINDS | {"Experiment", "InferenceService"}
    ]
    if len(runnable) != 1:
        print(
            f"{args.manifest}: expected one job, Experiment or InferenceService, found {len(runnable)}"
        )
        return 2
    doc = runnable[0]
    problems = manifests.validate(doc)
    if problems:
        print("\n".join(problems))
        return 2
    workdir = args.workdir or default_workdir(doc["metadata"]["name"])
    print(f"running {doc['kind']} {doc['metadata']['name']} locally; work dir {workdir}")
    if doc["kind"] == "Experiment":
        from tests.harness import katib

        result = katib.run_experiment(
            doc, workdir=workdir, timeout=args.timeout, runtimes=runtimes_beside(args.manifest)
        )
        print(result.format_trials())
        print(result.describe())
        return 0 if result.succeeded else 1
    if doc["kind"] == "InferenceService":
        return serve_until_interrupted(doc, workdir, args)
    from tests.harness import jobs

    job = jobs.run_job(
        doc, workdir=workdir, timeout=args.timeout, runtimes=runtimes_beside(args.manifest)
    )
    print(job.summary())
    if not job.succeeded:
        for replica in job.replicas:
            if any(replica.exit_codes):
                print(f"--- {replica.name} log tail ---")
                print(replica.log()[-3000:])
    return 0 if job.succeeded else 1


def serve_until_interrupted(doc: dict, workdir: Path, args: argparse.Namespace) -> int:
    from tests.harness import serving

    model_dir = {"model_dir": args.model_dir} if args.model_dir else {}
    with serving.serve(doc, workdir=workdir, **model_dir) as server:
        print(f"serving {server.model_name} at {server.url} (pid {server.pid}); Ctrl-C stops it")
        print(f"  V1: POST {server.url}/v1/models/{server.model_name}:predict")
        print(f"  V2: POST {server.url}/v2/models/{server.model_name}/infer")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("stopping")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    found = cases.discover()
    if not found:
        print(
            "No case study is here yet, so there is nothing to demonstrate.\n"
            "The harness is ready: `make test` checks it, and `python -m tests.harness --help` shows\n"
            "what it runs. The case studies land one by one; see the table in README.md."
        )
        return 0 if not args.case else 1
    if args.case:
        chosen = [c for c in found if c.name == args.case]
        if not chosen:
            names = ", ".join(c.name for c in found)
            print(f"no case study named {args.case!r}; the case studies are {names}")
            return 1
        found = chosen
    # mnist first: it is the template the others follow, and the README starts there.
    found.sort(key=lambda c: (c.name != "mnist", c.name))
    from tests.harness import demo

    return max(
        demo.run_case(case, default_workdir(f"demo-{case.name}"), verbose=args.verbose)
        for case in found
    )


def cmd_notebooks(args: argparse.Namespace) -> int:
    from tests.harness import notebooks

    sources = [p for case in cases.discover() for p in notebooks.discover(case.path)]
    # Fixtures keep their .ipynb where a test reads one; the copies fixtures' sources have none
    # (tests/test_harness_copies.py reads only the .py), and must not get one.
    fixtures = notebooks.discover(REPO_ROOT / "tests" / "fixtures")
    sources += [p for p in fixtures if p.with_suffix(".ipynb").exists()]
    for source in sources:
        print(notebooks.write_ipynb(source).relative_to(REPO_ROOT))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("cases", help="list the case studies").set_defaults(func=cmd_cases)
    p = sub.add_parser("validate", help="validate manifests strictly")
    p.add_argument(
        "paths", nargs="+", type=Path, help="YAML files or folders (searched recursively)"
    )
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("run", help="run a job, an Experiment or an InferenceService locally")
    p.add_argument("manifest", type=Path)
    p.add_argument(
        "--smoke", action="store_true", help="apply the case's smoke overrides (default: off)"
    )
    p.add_argument(
        "--workdir", type=Path, help="where logs and outputs go (default: runs/<name>-<time>)"
    )
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds before giving up (default: 3600)"
    )
    p.add_argument(
        "--model-dir", type=Path, help="local folder served as /mnt/models (default: none)"
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("demo", help="run a case study end to end on its small data")
    p.add_argument("case", nargs="?", help="the case study (default: every one, mnist first)")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every line the steps print (default: progress and a summary; the rest in logs)",
    )
    p.set_defaults(func=cmd_demo)
    sub.add_parser("notebooks", help="regenerate .ipynb files").set_defaults(func=cmd_notebooks)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
