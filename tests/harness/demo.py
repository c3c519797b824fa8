"""`make demo`: one case study end to end on its small data, told in a screenful.

Steps, each taken when the case has what it needs: train on the sample, validate the manifests,
run each distributed training job of the default kustomization (TrainJobs, a SparkApplication)
in smoke form, run the Katib Experiment in smoke form, run the pipeline with kfp.local (and
write an HTML report of its artifacts), serve the trained model and send it the request the case
keeps in case.toml (`[smoke.serve] request = "sample/x.json"`). A summary ends each case: what
was trained and how well, in the words of case.toml's `[demo]` table, and where the model, the
pipeline's report and the logs are.

Everything a step prints, its children included (kfp.local's executor dumps, TensorFlow's
start-up notices, Spark's log lines), goes to `<workdir>/logs/<step>.log`; the screen shows only
the progress a person follows: a line per epoch (the `name=value` lines every trainer prints,
folded into one), each Katib trial as it finishes, each pipeline task as it ends, Spark's
stages. `verbose=True` (`make demo V=1`, `python -m tests.harness demo -v`) shows every line.
"""

from __future__ import annotations

import html
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tests.harness import manifests, trainer
from tests.harness.cases import Case
from tests.harness.containers import REPO_ROOT

DISTRIBUTED_KINDS = ("TrainJob", "SparkApplication")
WIDTH = 100  # longer progress lines are cut (the log keeps them whole)
FAILURE_TAIL = 20  # log lines shown when a step fails

# For the children: TensorFlow's C++ log below warnings, Python's output unbuffered so the
# progress shows as it happens, Keras' plain one-line-per-epoch output (its progress bar is
# for a terminal; the children write to a log).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
METRIC = re.compile(r"^([A-Za-z_][\w.\-]*)=([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)$")
SPARK_STAGE = re.compile(r"\[Stage (\d+):[=> ]*\((\d+) \+ (\d+)\) / (\d+)\]")
TASK_STARTED = re.compile(r"Executing task '([^']+)'")
TASK_ENDED = re.compile(r"Task '([^']+)' finished with status (\w+)")
# Lines no one reads on a demo's screen; they stay in the step's log.
NOISE = re.compile(
    "|".join(
        (
            r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]",  # TensorFlow / absl C++ log lines
            r"^WARNING: All log messages before absl::InitializeLog",
            r"^To enable the following instructions:",
            r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN|ERROR|DEBUG) ",  # log4j: Spark
            r"^WARNING: Using incubator modules",
            r"^Using Spark's default log4j profile",
            r"^Setting (default|Spark) log level",
            r"^To adjust logging level",
            r"Warning: ",  # Python warnings (the source line under one is indented: see below)
            r"^WARNING:tensorflow:",
            r"^\d+/\d+ - \d+m?s - ",  # Keras' end-of-epoch line: the metric lines say it
            r"^Epoch \d+/\d+$",
            r"━",  # a Keras progress bar
            r"\d+/\d+ \[[\d:<?]+",  # a tqdm bar
            r"^={5} ",  # the job runner's attempt and exit lines
        )
    )
)


def clean(text: str) -> str:
    return ANSI.sub("", text).rstrip()


def cut(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


def number(value: float) -> str:
    """A metric as a person reads it: whole numbers whole, others to 4 significant digits."""
    return f"{value:.0f}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"


def fold_metrics(pairs: list[tuple[str, str]]) -> str:
    """`epoch=1`, `accuracy=0.69...`, ... as `epoch 1: accuracy 0.6942, ...`."""
    shown = []
    for name, value in pairs:
        try:
            shown.append((name, number(float(value))))
        except ValueError:
            shown.append((name, value))
    head = ""
    if shown and shown[0][0] == "epoch":
        head, shown = f"epoch {shown[0][1]}: ", shown[1:]
    return head + ", ".join(f"{name} {value}" for name, value in shown)


class Progress:
    """Turns a step's output, line by line, into the few lines a person follows.

    mode "script": a trainer's own lines, less NOISE, with each run of `name=value` lines
    folded into one; "job": only the epochs' folded metric lines (the final ones are in
    `last_metrics`); "pipeline": kfp.local's task endings, the tasks' final metric lines and
    Spark stages; "katib": the harness's lines on finished trials; "quiet": nothing. verbose
    shows every line as it is.
    """

    def __init__(
        self,
        echo: Callable[[str], None],
        mode: str,
        *,
        verbose: bool = False,
        prefix: str = "",
        keep: tuple[str, ...] = (),
    ) -> None:
        self.echo, self.mode, self.verbose, self.prefix = echo, mode, verbose, prefix
        self.keep = keep  # the metrics to show when a folded line would be too long
        self.metrics: list[tuple[str, str]] = []
        self.metrics_at = 0.0
        self.epoch_names: set[str] = set()  # what the first epoch's lines named
        self.last_metrics: dict[str, str] = {}
        self.tasks: dict[str, float] = {}
        self.running = ""  # the pipeline task whose lines come now, until it is named on screen
        self.task_metrics = ""  # its final metric line, said with its ending
        self.stages: set[str] = set()
        self.after_warning = False

    def feed(self, raw: str) -> None:
        line = clean(raw)
        if self.verbose:
            self.echo(line)
            return
        stripped = line.strip()
        match = METRIC.match(stripped)
        if match and self.mode in ("script", "job", "pipeline"):
            self.metrics.append(match.groups())
            self.metrics_at = time.monotonic()
            # A trainer may print its final metrics right after the last epoch's.
            names = {name for name, _ in self.metrics[1:]}
            if self.metrics[0][0] == "epoch" and self.epoch_names and names >= self.epoch_names:
                self.flush()
            return
        self.flush()
        if stripped:
            self._other(line, stripped)

    def _other(self, line: str, stripped: str) -> None:
        # A Python warning is followed by the source line it points at, indented.
        skip_source = self.after_warning and line.startswith("  ")
        self.after_warning = "Warning: " in stripped
        if self.mode == "script":
            if not skip_source and not NOISE.search(stripped):
                self.show(stripped)
        elif self.mode == "pipeline":
            self._pipeline(stripped)
        elif self.mode == "katib" and re.match(r"\[katib\] trial \S+ (?!created:)", stripped):
            self.show(stripped.removeprefix("[katib] "))  # a trial that finished

    def _pipeline(self, stripped: str) -> None:
        if started := TASK_STARTED.search(stripped):
            self.tasks[started[1]] = time.monotonic()
            self.running = started[1]
        elif ended := TASK_ENDED.search(stripped):
            took = time.monotonic() - self.tasks.get(ended[1], time.monotonic())
            metrics = f"; {self.task_metrics}" if self.task_metrics else ""
            self.show(f"task {ended[1]}: {ended[2]} ({took:.0f} s){metrics}")
            self.running = self.task_metrics = ""
        elif (stage := SPARK_STAGE.search(stripped)) and stage[1] not in self.stages:
            self.stages.add(stage[1])
            self.task_line(f"spark stage {stage[1]}: {stage[4]} tasks")

    def task_line(self, line: str) -> None:
        """A line from inside a pipeline task, under the task's name."""
        if self.running:
            self.show(f"task {self.running}:")
            self.running = ""
        self.show("  " + line)

    def tick(self) -> None:
        """Called between reads: metric lines that stopped coming a second ago are shown."""
        if self.metrics and time.monotonic() - self.metrics_at > 1.0:
            self.flush()

    def flush(self) -> None:
        if self.metrics:
            self.last_metrics = dict(self.metrics)
            epoch = self.metrics[0][0] == "epoch"
            if epoch and not self.epoch_names:
                self.epoch_names = {name for name, _ in self.metrics[1:]}
            line = fold_metrics(self.metrics)
            kept = [(n, v) for n, v in self.metrics if n == "epoch" or n in self.keep]
            if len(self.prefix + line) > WIDTH - 6 and kept:
                more = len(self.metrics) - len(kept)
                line = f"{fold_metrics(kept)} (and {more} more in the log)"
            self.metrics = []
            if self.mode == "script" or (self.mode == "job" and epoch):
                self.show(line)
            elif self.mode == "pipeline" and not epoch:  # its epochs: see the training step
                self.task_metrics = line  # said with the task's ending

    def show(self, line: str) -> None:
        self.echo(cut(self.prefix + line))


class Tail:
    """Follows a growing file in a thread and feeds its lines (split at \\n and \\r) to progress."""

    def __init__(self, path: Path, progress: Progress, interval: float = 0.25) -> None:
        self.path, self.progress, self.interval = Path(path), progress, interval
        self.offset, self.pending = 0, ""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Tail:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self._read()
        if self.pending:
            self.progress.feed(self.pending)
            self.pending = ""
        self.progress.flush()

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            self._read()
            self.progress.tick()

    def _read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        parts = re.split(r"\r\n|\r|\n", self.pending + chunk.decode(errors="replace"))
        self.pending = parts.pop()
        for part in parts:
            self.progress.feed(part)


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at log: this process's output and its children's."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with log.open("ab") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def rel(path: Path) -> str:
    """A path as the person at the repository root types it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


@dataclass
class Step:
    title: str
    run: Callable[[], str]  # returns the step's result line
    log: str  # the log's file name under <workdir>/logs
    mode: str = "script"


@dataclass
class Demo:
    """One case's run: its work dir, the screen, and what the summary needs."""

    case: Case
    workdir: Path
    verbose: bool = False
    console: TextIO | None = None  # default: this process's stdout as it was at the start
    metrics: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None
    failed: list[str] = field(default_factory=list)
    title: str = ""  # the running step's title, until a line under it is shown
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def model_dir(self) -> Path:
        return self.workdir / "model"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    def say(self, line: str = "") -> None:
        with self._lock:  # Tail threads say things too
            self.console.write(line + "\n")
            self.console.flush()

    def steps(self) -> list[Step]:
        case, steps = self.case, [Step("train on the sample", self.train, "train.log")]
        steps.append(Step("validate the manifests", self.validate, "manifests.log", "quiet"))
        for path in distributed_jobs(case):
            doc = manifests.load(path)[0]
            title = f"{doc['kind']} {doc['metadata']['name']} ({path.name}), smoke form"
            steps.append(Step(title, self.job_runner(path), f"{path.stem}.log", "quiet"))
        if (case.path / "manifests/katib-experiment.yaml").exists():
            steps.append(Step("Katib Experiment, smoke form", self.katib, "katib.log", "katib"))
        steps.append(Step("pipeline with kfp.local", self.pipeline, "pipeline.log", "pipeline"))
        if (case.path / "manifests/inferenceservice.yaml").exists() and "serve" in case.smoke:
            steps.append(Step("serve the model and query it", self.serve, "serve.log", "quiet"))
        return steps

    def run(self) -> int:
        if self.console is not None:
            return self._run()
        # While a step runs, file descriptors 1 and 2 point at its log: the screen is a copy.
        sys.stdout.flush()
        with os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1) as self.console:
            try:
                return self._run()
            finally:
                self.console = None

    def _run(self) -> int:
        started = time.monotonic()
        os.environ.update(QUIET_ENV)
        title = self.case.config.get("title", "")
        self.say(f"\n== {self.case.name}: {title}")
        more = "" if self.verbose else "; every line in its logs/ (or `make demo V=1`)"
        self.say(f"work dir {rel(self.workdir)}{more}")
        steps = self.steps()
        for number_, step in enumerate(steps, 1):
            self.title = f"[{number_}/{len(steps)}] {step.title}"
            if not self.take(step) and step.run == self.train:
                break  # nothing to serve without a model
        self.summary(time.monotonic() - started)
        return 1 if self.failed else 0

    def take(self, step: Step) -> bool:
        log = self.logs / step.log
        progress = Progress(self.say_indented, step.mode, verbose=self.verbose, keep=self.keep)
        started = time.monotonic()
        try:
            with Tail(log, progress), output_to(log):
                lines = step.run().splitlines()
        except Exception as error:  # a failed step is reported, and the demo goes on
            self.failed.append(step.title)
            self.title += ": FAILED"
            self.say_indented(f"FAILED: {type(error).__name__}: {str(error).splitlines()[0]}")
            if not self.verbose:
                tail = log.read_text(errors="replace").splitlines()[-FAILURE_TAIL:]
                self.say_indented(f"last lines of {rel(log)}:")
                for line in tail:
                    self.say_indented("  " + cut(clean(line)))
            return False
        lines[-1] += f" ({time.monotonic() - started:.0f} s)"
        if self.title and len(lines) == 1 and len(self.title + lines[0]) < WIDTH:
            self.say(f"{self.title}: {lines[0]}")  # a step with nothing else to say: one line
            self.title = ""
            return True
        for line in lines:
            self.say_indented(line)
        return True

    @property
    def keep(self) -> tuple[str, ...]:
        """The metrics case.toml sets floors or ceilings on: what a long metric line keeps."""
        return (*self.case.smoke.get("floors", {}), *self.case.smoke.get("ceilings", {}))

    def say_indented(self, line: str) -> None:
        """A line under the running step, whose title goes first if it is not on screen yet."""
        with self._lock:
            if self.title:
                self.say(self.title)
                self.title = ""
            self.say("    " + line)

    # --- the steps -------------------------------------------------------------------------

    def train(self) -> str:
        argv = self.case.smoke_train_argv(self.model_dir)
        shown = [rel(a) if a == str(self.model_dir) else a for a in argv[3:]]
        self.say_indented(f"$ python -m {argv[2]} {' '.join(shown)}")
        subprocess.run(argv, cwd=REPO_ROOT, check=True)
        self.metrics = json.loads((self.model_dir / "metrics.json").read_text())
        return f"wrote {', '.join(sorted(files(self.model_dir)))}"

    def validate(self) -> str:
        problems = [e for p in self.case.manifests for e in manifests.validate_file(p)]
        if problems:
            print("\n".join(problems))
            raise ValueError(f"{len(problems)} problem(s), first: {problems[0]}")
        return f"{len(self.case.manifests)} manifest files valid, unknown fields rejected"

    def job_runner(self, path: Path) -> Callable[[], str]:
        def run() -> str:
            from tests.harness import jobs, operators

            doc = manifests.apply_overrides(manifests.load(path)[0], self.case.overrides_for(path))
            workdir = self.workdir / "jobs" / path.stem
            rtype, index = operators.primary(doc)
            primary_log = workdir / "logs" / f"{rtype.lower()}-{index}.log"
            replica = f"{rtype.lower()}-{index}: "
            progress = Progress(
                self.say_indented, "job", verbose=self.verbose, prefix=replica, keep=self.keep
            )
            with Tail(primary_log, progress):
                result = jobs.run_job(doc, workdir=workdir, runtimes=trainer.runtimes_beside(path))
            print(result.summary())
            line = f"{result.kind} {result.name}: {result.reason}"
            replicas = f"{len(result.replicas)} {plural(len(result.replicas), 'replica')}"
            if not result.succeeded:
                raise RuntimeError(f"{line}: {result.message} (logs in {rel(workdir / 'logs')})")
            figures = self.floor_figures(progress.last_metrics)
            return f"{result.reason} on {replicas}" + (f"; {figures}" if figures else "")

        return run

    def katib(self) -> str:
        from tests.harness import katib

        result = katib.run_smoke(self.case, workdir=self.workdir / "katib", timeout=3600)
        best = result.optimal_trial
        if not result.succeeded or best is None:
            raise RuntimeError(f"Experiment {result.name}: {result.reason}: {result.message}")
        params = ", ".join(f"{k}={shorter(v)}" for k, v in best.parameters.items())
        best_line = f"best {result.objective_metric} {number(best.objective)}"
        return f"{result.reason}; {best_line}\n  with {params}"

    def pipeline(self) -> str:
        from tests.harness import pipelines

        module = importlib.import_module(f"{self.case.name}.pipeline")
        arguments = dict(self.case.smoke.get("pipeline", {}).get("arguments", {}))
        workdir = self.workdir / "pipeline"
        run = pipelines.run_local(pipelines.find_pipeline(module), arguments, workdir=workdir)
        self.report = write_report(self.case, run, workdir / "report.html")
        return f"{len(run_order(run))} tasks; report {rel(self.report)}"

    def serve(self) -> str:
        from tests.harness import serving

        request_file = self.case.smoke["serve"]["request"]
        request = json.loads((self.case.path / request_file).read_text())
        protocol = "V2" if "inputs" in request else "V1"  # an Open Inference body, or KServe's V1
        isvc = self.case.path / "manifests/inferenceservice.yaml"
        with serving.serve(isvc, workdir=self.workdir / "serving", model_dir=self.model_dir) as s:
            answer = (s.v2_infer if protocol == "V2" else s.v1_predict)(**request)
            print(f"{protocol} {request_file} to {s.url}: HTTP {answer.status_code}\n{answer.text}")
        if answer.status_code != 200:
            raise RuntimeError(f"the server answered HTTP {answer.status_code}: {answer.text}")
        return f"{protocol} {request_file} -> HTTP {answer.status_code}: {gist(answer.text)}"

    # --- the summary ---------------------------------------------------------------------

    def floor_figures(self, metrics: dict[str, Any]) -> str:
        """The metrics case.toml sets floors or ceilings on, as they came out."""
        names = [*self.case.smoke.get("floors", {}), *self.case.smoke.get("ceilings", {})]
        found = [(n, metrics[n]) for n in names if n in metrics]
        return ", ".join(f"{n} {number(float(v))}" for n, v in found)

    def floors_met(self) -> str:
        """Whether the trained model clears case.toml's floors and ceilings."""
        floors = self.case.smoke.get("floors", {})
        ceilings = self.case.smoke.get("ceilings", {})
        value = {n: float(self.metrics.get(n, float("nan"))) for n in [*floors, *ceilings]}
        missed = [f"{n} {number(value[n])} < {v}" for n, v in floors.items() if not value[n] >= v]
        missed += [f"{n} {number(value[n])} > {v}" for n, v in ceilings.items() if value[n] > v]
        if missed:
            return "BELOW case.toml's floors: " + "; ".join(missed)
        bounds = [f"{n} >= {v}" for n, v in floors.items()]
        bounds += [f"{n} <= {v}" for n, v in ceilings.items()]
        return f"case.toml's floors met: {', '.join(bounds)}"

    def summary(self, seconds: float) -> None:
        demo = self.case.config.get("demo", {})
        failed = f", FAILED: {', '.join(self.failed)}" if self.failed else ""
        self.say(f"== {self.case.name}: summary ({seconds:.0f} s{failed})")
        rows: list[tuple[str, str]] = []
        if self.metrics:
            figures = self.floor_figures(self.metrics)
            rows += [
                ("trained", describe(demo.get("trained"), self.metrics) or self.case.name),
                ("how well", describe(demo.get("how_well"), self.metrics) or figures),
                ("", self.floors_met()),
                ("model", f"{rel(self.model_dir)}/ ({', '.join(sorted(files(self.model_dir)))})"),
            ]
        if self.report:
            rows.append(("pipeline", f"{rel(self.report)}, for a browser"))
        rows.append(("logs", f"{rel(self.logs)}/ (one per step; replicas' in jobs/*/logs/)"))
        first = rel(self.case.path / "notebooks" / "walkthrough.ipynb")
        rows.append(("next", f"`make lab`, open {first}, then kubeflow.ipynb beside it"))
        for label, text in rows:
            self.say(f"  {label:9} {text}")


def gist(body: str) -> str:
    """What a V1 or V2 answer holds, in a few words."""
    try:
        answer = json.loads(body)
    except ValueError:
        return cut(body, 60)
    if isinstance(answer.get("predictions"), list):
        found = answer["predictions"]
        # A prediction's short fields (a digit, a label), not its list of probabilities.
        said = [
            ", ".join(f"{k} {v}" for k, v in p.items() if not isinstance(v, list | dict))
            if isinstance(p, dict)
            else cut(json.dumps(p), 30)
            for p in found
        ]
        return cut(f"{len(found)} {plural(len(found), 'prediction')}: {'; '.join(said)}", 70)
    if isinstance(answer.get("outputs"), list):
        outputs = [
            f"{o.get('name')} {o.get('datatype')} {o.get('shape')}" for o in answer["outputs"]
        ]
        return f"outputs {', '.join(outputs)}"
    return cut(body, 60)


def plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def shorter(value: str) -> str:
    """A sampled float as a person reads it (Katib prints 12 digits)."""
    try:
        return number(float(value)) if "." in value else value
    except ValueError:
        return value


def describe(template: str | None, metrics: dict[str, Any]) -> str:
    """case.toml's [demo] text with the metrics filled in ('' when it names an unknown one)."""
    if not template:
        return ""
    try:
        return template.format(**metrics)
    except (KeyError, ValueError, IndexError):
        return ""


def files(folder: Path) -> list[str]:
    return [p.name for p in Path(folder).iterdir()] if Path(folder).is_dir() else []


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


# --- the pipeline's report ---------------------------------------------------------------


def run_order(run: Any) -> list[str]:
    """The tasks of a kfp.local run in the order they ended."""
    outputs = sorted(run.root.rglob("executor_output.json"), key=lambda p: p.stat().st_mtime)
    return [p.parent.name for p in outputs]


def artifact_types(case: Case) -> dict[tuple[str, str], str]:
    """(task, output artifact) -> schema title (system.HTML, ...), from the compiled pipeline."""
    import yaml

    # The pipeline, the first document (a second holds any Kubernetes platform spec).
    spec = next(yaml.safe_load_all((case.path / "manifests" / "pipeline.yaml").read_text()))
    components = spec.get("components", {})
    dags = [spec.get("root", {}), *components.values()]
    types = {}
    for dag in dags:
        for task, entry in (dag.get("dag") or {}).get("tasks", {}).items():
            component = components.get(entry.get("componentRef", {}).get("name", ""), {})
            outputs = (component.get("outputDefinitions") or {}).get("artifacts", {})
            for name, definition in outputs.items():
                types[(task, name)] = definition["artifactType"]["schemaTitle"]
    return types


def write_report(case: Case, run: Any, out: Path) -> Path:
    """One HTML page of a local pipeline run: each task's parameters and artifacts, with
    Metrics as tables, a ClassificationMetrics' confusion matrix, Markdown rendered and HTML
    artifacts (copied beside the page as `<task>-<name>.html`) shown inline, as the KFP UI's
    Visualizations tab would."""
    from markdown_it import MarkdownIt  # jupytext's own Markdown parser

    markdown = MarkdownIt("commonmark").enable("table")  # the tables KFP's UI draws too
    types = artifact_types(case)
    body = [f"<h1>{html.escape(case.name)}: pipeline run {html.escape(run.root.name)}</h1>"]
    body.append(f"<p>Artifacts: <code>{html.escape(str(run.root))}</code></p>")
    for task in run_order(run):
        folder = run.task_dir(task)
        output = json.loads((folder / "executor_output.json").read_text())
        body.append(f"<h2>{html.escape(task)}</h2>")
        parameters = output.get("parameterValues", {})
        if parameters:
            body.append(table([(k, v) for k, v in parameters.items()], ("output", "value")))
        for name, entry in output.get("artifacts", {}).items():
            kind = types.get((task, name), "system.Artifact")
            for artifact in entry.get("artifacts", []):
                path = Path(artifact["uri"])
                link = os.path.relpath(path, out.parent)
                body.append(
                    f"<h3>{html.escape(name)} <small>({html.escape(kind)})</small></h3>"
                    f"<p><a href='{html.escape(link)}'>{html.escape(link)}</a></p>"
                )
                metadata = artifact.get("metadata", {})
                body.append(render_artifact(kind, path, metadata, task, out.parent, markdown))
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(case.name)} pipeline run</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out


STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em}"
    "iframe{width:100%;height:40em;border:1px solid #ccc}small{color:#666}"
)


def render_artifact(
    kind: str, path: Path, metadata: dict, task: str, folder: Path, markdown: Any
) -> str:
    if kind == "system.ClassificationMetrics" and "confusionMatrix" in metadata:
        matrix = metadata["confusionMatrix"]
        labels = [a["displayName"] for a in matrix["annotationSpecs"]]
        head = "<tr><th>true \\ predicted</th>" + "".join(
            f"<th>{html.escape(x)}</th>" for x in labels
        )
        rows = [
            f"<tr><th>{html.escape(label)}</th>"
            + "".join(f"<td>{count}</td>" for count in row["row"])
            + "</tr>"
            for label, row in zip(labels, matrix["rows"], strict=False)
        ]
        return f"<table>{head}</tr>{''.join(rows)}</table>"
    parts = [table(sorted(metadata.items()), ("name", "value"))] if metadata else []
    if kind == "system.Markdown" and path.is_file():
        parts.append(markdown.render(path.read_text()))
    elif kind == "system.HTML" and path.is_file():
        copy = folder / f"{task}-{path.name}.html"
        shutil.copyfile(path, copy)
        parts.append(f"<iframe src='{html.escape(copy.name)}'></iframe>")
    elif path.is_dir():
        listed = ", ".join(sorted(p.name for p in path.iterdir()))
        parts.append(f"<p>files: {html.escape(listed)}</p>")
    return "".join(parts)


def table(rows: list[tuple[Any, Any]], header: tuple[str, str]) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(show_value(v))}</td></tr>"
        for k, v in rows
    )
    return f"<table><tr><th>{header[0]}</th><th>{header[1]}</th></tr>{cells}</table>"


def show_value(value: Any) -> str:
    return number(value) if isinstance(value, float) else str(value)


def run_case(case: Case, workdir: Path, *, verbose: bool = False) -> int:
    """Run every step the case supports and print its summary; return 0 when all passed."""
    return Demo(case, Path(workdir), verbose=verbose).run()
