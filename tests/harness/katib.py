"""Run a Katib Experiment (kubeflow.org/v1beta1) on this machine, the way Katib would.

- Suggestions come from the Optuna sampler of the algorithm's family (ALGORITHMS below), driven
  through Optuna's ask/tell interface; values reach the trial as strings, as Katib passes them.
- Each trial is the trialSpec with `${trialParameters.x}` filled in (and the `${trialSpec.Name}`
  style metadata references), named `<experiment>-<8 random chars>`. Kubeflow training jobs run
  through `tests.harness.jobs`; a batch/v1 Job runs through the small runner at the end.
- Katib's pod webhook runs as on a cluster (pkg/webhook/v1beta1/pod, Katib 0.19): for the StdOut
  and File collectors the primary container (primaryContainerName) of the primary pod
  (primaryPodLabels; Katib's defaults: TrainJob node 0, a training-operator job's job-role=master
  pod, every pod of a batch/v1 Job) runs Katib's wrapped command (`katib_command`): command and
  args joined with spaces, unquoted, into one `sh -c` line (a leading `sh -c` / `bash -c` of the
  container's own is kept as the shell), with StdOut's `1>/var/log/katib/metrics.log 2>&1` and
  `&& echo completed > /var/log/katib/$$.pid`. So a command that only works unjoined (a quoted
  argument with spaces, a `/bin/sh -c` script with arguments) fails here as it does there; other
  pods and containers run unwrapped. A pod without a container of that name is refused, as the
  webhook refuses it; every primary container gets KATIB_TRIAL_NAME.
- Metrics are read as Katib's collectors read them, from the metrics file (StdOut: the primary
  container's redirected output) once the wrapped command has marked itself completed (without
  the mark, the collector fails the pod): TEXT with the same regex filters, or JSON lines with
  string values.
- The experiment stops as Katib's controller decides (goal, max failed, max trials, grid end);
  trials still running then are left to finish, as Katib leaves them.

For the case studies' tests: run_smoke runs a case's Experiment with case.toml's smoke overrides,
and outside_search_space lists the trial values its search space does not hold.

Not done locally: early stopping (the spec is noted and ignored), NAS, resume policies, the
TensorFlowEvent, Prometheus and Push collectors, and ConfigMap trial templates. Kubernetes'
`$(VAR)` expansion of command and args is not done (Katib's `$$$$.pid` is written as the `$$.pid`
it becomes); the harness runs one container per pod, so a primary container that is not the
one it runs is an error, and at most one pod per trial may be wrapped (they share one folder).
"""

from __future__ import annotations

import copy
import json
import math
import posixpath
import random
import re
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from tests.harness import batch, manifests, operators, trainer
from tests.harness.containers import PYTHONS, PathMap

if TYPE_CHECKING:
    from tests.harness.cases import Case
    from tests.harness.jobs import JobResult

# Katib's default metrics filter (pkg/metricscollector/v1beta1/common/const.go, DefaultFilter).
DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
DEFAULT_METRICS_FILE = "/var/log/katib/metrics.log"  # common.DefaultFilePath; StdOut's always
# The collectors whose primary container Katib's webhook wraps (pod/const.go,
# NeedWrapWorkerMetricsCollectorList; TensorFlowEvent is not run here).
WRAPPED_COLLECTORS = {"StdOut", "File"}
TRAINING_COMPLETED = "completed"  # metricscollector common.TrainingCompleted
# experiments/v1beta1/constants.go: primaryPodLabels Katib sets when the template has none; a
# batch/v1 Job gets none, so every pod of it is primary.
TRAINJOB_PRIMARY_POD_LABELS = {
    "jobset.sigs.k8s.io/replicatedjob-name": "node",
    "batch.kubernetes.io/job-completion-index": "0",
}
KUBEFLOW_JOB_PRIMARY_POD_LABELS = {"training.kubeflow.org/job-role": "master"}
KUBEFLOW_JOB_KINDS = {"TFJob", "PyTorchJob", "XGBoostJob", "MPIJob", "TrainJob"}
DEFAULT_PARALLEL_TRIALS = 3  # experiments/v1beta1 DefaultTrialParallelCount
# k8s.io/apimachinery's rand.String alphabet, which Katib uses for trial names.
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
UNSUPPORTED_ALGORITHMS = {"hyperband", "enas", "darts", "pbt"}
SUPPORTED_COLLECTORS = {"StdOut", "File", "None"}
# Katib's completion reasons and messages (experiment/util/status_util.go): message, succeeded.
OUTCOMES = {
    "ExperimentGoalReached": ("Experiment has succeeded because Objective goal has reached", True),
    "ExperimentFailed": ("Experiment has failed because max failed count has reached", False),
    "ExperimentMaxTrialsReached": (
        "Experiment has succeeded because max trial count has reached",
        True,
    ),
    "ExperimentSuggestionEndReached": (
        "Experiment has succeeded because suggestion service has reached the end",
        True,
    ),
    # Not Katib's: the harness's own time limit ran out first.
    "HarnessTimeout": ("the local run passed its time limit before Katib would stop it", False),
}


@dataclass
class Trial:
    """One trial: what it was given, how it ended, and what its collector read."""

    name: str
    parameters: dict[str, str]
    status: str = "Running"  # then Succeeded / Failed / MetricsUnavailable (EarlyStopped unused)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    job: JobResult | None = None
    seconds: float = 0.0
    message: str = ""
    objective: float | None = None  # the objective metric by its metric strategy
    workdir: Path | None = None
    created: float = field(default_factory=time.time)
    # The metrics file the collector read (StdOut: the primary container's output), or None.
    metrics_log: Path | None = None


@dataclass
class ExperimentResult:
    """How the Experiment ended, with every trial, as `kubectl get/describe` would show it."""

    name: str
    trials: list[Trial]
    succeeded: bool
    reason: str
    message: str
    optimal_trial: Trial | None
    objective_metric: str = ""
    parameter_names: list[str] = field(default_factory=list)
    conditions: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.trials)

    def format_trials(self) -> str:
        """A table like `kubectl get trials`, plus one column per parameter and the objective."""
        header = ["NAME", "TYPE", "STATUS", "AGE", *self.parameter_names, self.objective_metric]
        rows = [header]
        now = time.time()
        for t in self.trials:
            value = "" if t.objective is None else f"{t.objective:.6g}"
            params = [t.parameters.get(p, "") for p in self.parameter_names]
            rows.append([t.name, t.status, "True", _age(now - t.created), *params, value])
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return "\n".join(
            "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        )

    def describe(self) -> str:
        """The Status part of `kubectl describe experiment`."""
        lines = [f"Name:         {self.name}", "Kind:         Experiment", "Status:"]
        lines.append("  Conditions:")
        for c in self.conditions:
            lines += [
                f"    Message:  {c['message']}",
                f"    Reason:   {c['reason']}",
                f"    Status:   {c['status']}",
                f"    Type:     {c['type']}",
            ]
        lines += ["  Current Optimal Trial:", *self._optimal_lines()]
        for status in ("Failed", "MetricsUnavailable", "Succeeded"):
            names = [t.name for t in self.trials if t.status == status]
            if names:
                label = "Metrics Unavailable" if status == "MetricsUnavailable" else status
                lines.append(f"  {label} Trial List:")
                lines += [f"    {n}" for n in names]
        lines += [
            f"  Trials:                     {len(self.trials)}",
            f"  Trials Failed:              {self.count('Failed')}",
            f"  Trial Metrics Unavailable:  {self.count('MetricsUnavailable')}",
            f"  Trials Succeeded:           {self.count('Succeeded')}",
        ]
        return "\n".join(lines)

    def _optimal_lines(self) -> list[str]:
        best = self.optimal_trial
        if best is None:
            return ["    Best Trial Name:  <none>"]
        lines = [f"    Best Trial Name:  {best.name}", "    Observation:", "      Metrics:"]
        for name, m in best.metrics.items():
            lines += [
                f"        Latest:  {m['latest']:g}",
                f"        Max:     {m['max']:g}",
                f"        Min:     {m['min']:g}",
                f"        Name:    {name}",
            ]
        lines.append("    Parameter Assignments:")
        for name, value in best.parameters.items():
            lines += [f"      Name:   {name}", f"      Value:  {value}"]
        return lines


# --- The Experiment spec, checked once before any trial runs ------------------------------


@dataclass
class Parameter:
    name: str
    type: str  # double / int / discrete / categorical
    min: str = ""
    max: str = ""
    step: str = ""
    values: list[str] = field(default_factory=list)
    log: bool = False


@dataclass
class Plan:
    """What run_experiment needs from the Experiment, with Katib's defaults applied."""

    name: str
    namespace: str
    objective_type: str
    objective_metric: str
    metric_names: list[str]  # objective first, as Katib's collectors order them
    strategy: str  # min / max / latest, for the objective
    goal: float | None
    parameters: list[Parameter]
    algorithm: str
    sampler: optuna.samplers.BaseSampler
    distributions: dict[str, BaseDistribution]
    grid_size: int | None
    parallel: int
    max_trials: int | None
    max_failed: int | None
    collector: str
    metrics_file: str
    file_format: str
    filters: list[str]
    trial_parameters: list[dict]
    trial_spec: dict
    primary_container: str
    primary_pod_labels: dict[str, str] | None = None  # None: every pod of the trial


def plan_experiment(doc: Mapping) -> Plan:
    """Read and check an Experiment; every problem the harness cannot run is a ValueError here."""
    if doc.get("kind") != "Experiment":
        raise ValueError(f"expected a Katib Experiment, got kind {doc.get('kind')!r}")
    meta, spec = doc.get("metadata", {}), doc.get("spec", {})
    if spec.get("nasConfig"):
        raise ValueError("nasConfig (neural architecture search) is not run locally")
    if spec.get("earlyStopping"):
        _say("spec.earlyStopping is not run locally: every trial runs to its end")
    objective = spec.get("objective") or {}
    obj_type = objective.get("type", "")
    if obj_type not in ("maximize", "minimize"):
        raise ValueError(f"objective.type must be maximize or minimize, got {obj_type!r}")
    metric = objective.get("objectiveMetricName", "")
    if not metric:
        raise ValueError("objective.objectiveMetricName is required")
    parameters = [_parameter(p) for p in spec.get("parameters", [])]
    if not parameters:
        raise ValueError("spec.parameters is empty: there is nothing to tune")
    algorithm = (spec.get("algorithm") or {}).get("algorithmName", "")
    settings = {
        s["name"]: str(s.get("value", ""))
        for s in (spec.get("algorithm") or {}).get("algorithmSettings") or []
    }
    max_trials = spec.get("maxTrialCount")
    grid = grid_values(parameters) if algorithm == "grid" else None
    grid_size = math.prod(len(v) for v in grid.values()) if grid is not None else None
    _check_trial_counts(max_trials, grid_size)
    sampler = build_sampler(algorithm, settings, parameters, grid)
    template = spec.get("trialTemplate") or {}
    if "trialSpec" not in template:
        raise ValueError("trialTemplate.trialSpec is required (ConfigMap templates need a cluster)")
    collector, metrics_file, file_format, filters = _collector(spec, metric)
    plan = Plan(
        name=meta.get("name", "experiment"),
        namespace=meta.get("namespace", "default"),
        objective_type=obj_type,
        objective_metric=metric,
        metric_names=[metric, *objective.get("additionalMetricNames", [])],
        strategy=_strategy(objective),
        goal=None if objective.get("goal") is None else float(objective["goal"]),
        parameters=parameters,
        algorithm=algorithm,
        sampler=sampler,
        distributions=_distributions(parameters, grid),
        grid_size=grid_size,
        parallel=int(spec.get("parallelTrialCount") or DEFAULT_PARALLEL_TRIALS),
        max_trials=_optional_int(max_trials),
        max_failed=_optional_int(spec.get("maxFailedTrialCount")),
        collector=collector,
        metrics_file=metrics_file,
        file_format=file_format,
        filters=filters,
        trial_parameters=list(template.get("trialParameters") or []),
        trial_spec=template["trialSpec"],
        primary_container=template.get("primaryContainerName", ""),
        primary_pod_labels=_primary_pod_labels(template),
    )
    # Render once with placeholder values so a bad reference fails before any trial starts.
    render_trial_spec(plan, {p.name: "0" for p in parameters}, f"{plan.name}-check")
    return plan


def _primary_pod_labels(template: Mapping) -> dict[str, str] | None:
    """primaryPodLabels with Katib's defaults (experiment_defaults.go, setDefaultTrialTemplate)."""
    labels = template.get("primaryPodLabels")
    if labels:
        return {str(k): str(v) for k, v in labels.items()}
    kind = (template.get("trialSpec") or {}).get("kind")
    if kind == "TrainJob":
        return dict(TRAINJOB_PRIMARY_POD_LABELS)
    if kind in KUBEFLOW_JOB_KINDS:
        return dict(KUBEFLOW_JOB_PRIMARY_POD_LABELS)
    return None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _parameter(p: Mapping) -> Parameter:
    space = p.get("feasibleSpace") or {}
    kind = p.get("parameterType", "")
    distribution = space.get("distribution", "uniform") or "uniform"
    if distribution not in ("uniform", "logUniform"):
        raise ValueError(
            f"parameter {p.get('name')!r}: distribution {distribution!r} has no Optuna "
            "equivalent here; use uniform or logUniform"
        )
    param = Parameter(
        name=p["name"],
        type=kind,
        min=str(space.get("min", "")),
        max=str(space.get("max", "")),
        step=str(space.get("step", "") or ""),
        values=[str(v) for v in space.get("list") or []],
        log=distribution == "logUniform",
    )
    if kind in ("double", "int") and not (param.min and param.max):
        raise ValueError(f"parameter {param.name!r} ({kind}) needs feasibleSpace min and max")
    if kind in ("discrete", "categorical") and not param.values:
        raise ValueError(f"parameter {param.name!r} ({kind}) needs a feasibleSpace list")
    if kind not in ("double", "int", "discrete", "categorical"):
        raise ValueError(f"parameter {param.name!r}: unknown parameterType {kind!r}")
    return param


def _check_trial_counts(max_trials: Any, grid_size: int | None) -> None:
    if max_trials is None and grid_size is None:
        raise ValueError(
            "spec.maxTrialCount is not set: Katib would create trials until the goal is reached; "
            "set it so the local run has an end"
        )
    if grid_size is not None and max_trials is not None and int(max_trials) > grid_size:
        # The same check as Katib's grid suggestion service makes when it validates settings.
        raise ValueError(
            f"Max Trial Count: {max_trials} > all possible search combinations: {grid_size}"
        )


def _strategy(objective: Mapping) -> str:
    """The objective's metric strategy; Katib defaults it to max/min by the objective type."""
    for s in objective.get("metricStrategies") or []:
        if s.get("name") == objective.get("objectiveMetricName"):
            if s.get("value") not in ("min", "max", "latest"):
                raise ValueError(f"metric strategy must be min, max or latest: {s}")
            return s["value"]
    return "max" if objective.get("type") == "maximize" else "min"


def _collector(spec: Mapping, metric: str) -> tuple[str, str, str, list[str]]:
    mc = spec.get("metricsCollectorSpec") or {}
    kind = (mc.get("collector") or {}).get("kind", "StdOut")
    if kind not in SUPPORTED_COLLECTORS:
        raise ValueError(f"metrics collector {kind!r} is not run locally; use StdOut, File or None")
    source = mc.get("source") or {}
    fs = source.get("fileSystemPath") or {}
    filters = list((source.get("filter") or {}).get("metricsFormat") or [])
    for f in filters:
        if re.compile(f).groups < 2:
            raise ValueError(f"metricsFormat {f!r} needs two groups: the name and the value")
    # StdOut always redirects to the default file (pod/utils.go, getMountPath).
    path = DEFAULT_METRICS_FILE if kind == "StdOut" else fs.get("path") or DEFAULT_METRICS_FILE
    return kind, path, fs.get("format") or "TEXT", filters


# --- Search space and samplers -------------------------------------------------------------


def grid_values(parameters: list[Parameter]) -> dict[str, list]:
    """Every value grid search visits, per parameter, as Katib's grid service builds them."""
    grid: dict[str, list] = {}
    for p in parameters:
        if p.type == "int":
            grid[p.name] = list(range(int(p.min), int(p.max) + 1, int(p.step or 1)))
        elif p.type == "double":
            if not p.step:
                raise ValueError(
                    f"parameter {p.name!r} has no step: grid search needs a step for every "
                    "double parameter"
                )
            low, high, step = float(p.min), float(p.max), float(p.step)
            count = int(math.floor((high - low) / step + 1e-9)) + 1
            grid[p.name] = [_tidy(low + i * step) for i in range(count)]
        else:
            grid[p.name] = list(p.values)
    return grid


def _distributions(
    parameters: list[Parameter], grid: dict[str, list] | None
) -> dict[str, BaseDistribution]:
    if grid is not None:
        # Grid points are the only values, so a categorical over them always contains them.
        return {name: CategoricalDistribution(values) for name, values in grid.items()}
    out: dict[str, BaseDistribution] = {}
    for p in parameters:
        if p.type == "int":
            step = 1 if p.log else int(p.step or 1)
            out[p.name] = IntDistribution(int(p.min), int(p.max), log=p.log, step=step)
        elif p.type == "double":
            step = float(p.step) if p.step and not p.log else None
            out[p.name] = FloatDistribution(float(p.min), float(p.max), log=p.log, step=step)
        else:
            out[p.name] = CategoricalDistribution(p.values)
    return out


def _hyperopt_gamma(value: str) -> Callable[[int], int]:
    """Hyperopt's gamma (the fraction of trials counted good) as Optuna's gamma function."""
    fraction = float(value)
    return lambda n: min(math.ceil(fraction * n), 25)


def _tpe_settings() -> dict[str, tuple[str, Callable] | None]:
    return {
        "random_state": ("seed", int),
        "n_startup_trials": ("n_startup_trials", int),
        "n_ei_candidates": ("n_ei_candidates", int),
        "n_EI_candidates": ("n_ei_candidates", int),  # the hyperopt service's spelling
        "prior_weight": ("prior_weight", float),
        "gamma": ("gamma", _hyperopt_gamma),
    }


# algorithmName -> (Optuna sampler, Katib setting -> (sampler kwarg, converter), or None where
# Katib knows the setting but Optuna has no equivalent: it is then noted and ignored).
ALGORITHMS: dict[str, tuple[Callable[..., optuna.samplers.BaseSampler], dict]] = {
    "random": (optuna.samplers.RandomSampler, {"random_state": ("seed", int)}),
    "grid": (optuna.samplers.GridSampler, {"random_state": ("seed", int)}),
    "tpe": (optuna.samplers.TPESampler, _tpe_settings()),
    "multivariate-tpe": (optuna.samplers.TPESampler, _tpe_settings()),
    "cmaes": (
        optuna.samplers.CmaEsSampler,
        {"random_state": ("seed", int), "sigma": ("sigma0", float), "restart_strategy": None},
    ),
    "sobol": (optuna.samplers.QMCSampler, {"random_state": ("seed", int)}),
    "bayesianoptimization": (
        optuna.samplers.GPSampler,
        {
            "random_state": ("seed", int),
            "n_initial_points": ("n_startup_trials", int),
            "base_estimator": None,
            "acq_func": None,
            "acq_optimizer": None,
        },
    ),
}


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler without its study.stop(), which only works inside study.optimize().

    The harness counts grid points itself, so nothing is lost.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def build_sampler(
    algorithm: str,
    settings: Mapping[str, str],
    parameters: list[Parameter],
    grid: dict[str, list] | None = None,
) -> optuna.samplers.BaseSampler:
    """The Optuna sampler standing in for Katib's suggestion service of this algorithm."""
    if algorithm in UNSUPPORTED_ALGORITHMS:
        raise ValueError(
            f"algorithm {algorithm!r} is not run locally (it needs Katib's own suggestion "
            f"service); use one of {', '.join(ALGORITHMS)}"
        )
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    factory, known = ALGORITHMS[algorithm]
    kwargs: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in known:
            raise ValueError(
                f"unknown algorithmSetting {name!r} for {algorithm}; known: {', '.join(known)}"
            )
        if known[name] is None:
            _check_ignored_setting(algorithm, name, value)
            continue
        kwarg, convert = known[name]
        try:
            kwargs[kwarg] = convert(value)
        except ValueError as e:
            raise ValueError(f"algorithmSetting {name}={value!r}: {e}") from None
    if algorithm in ("cmaes", "sobol", "bayesianoptimization"):
        numeric = [p for p in parameters if p.type in ("int", "double")]
        if algorithm == "cmaes" and len(numeric) < 2:
            raise ValueError("cmaes only supports two or more dimensional continuous search space.")
        kwargs["warn_independent_sampling"] = False  # categoricals fall back to random, by design
    if algorithm == "multivariate-tpe":
        kwargs["multivariate"] = True
    if algorithm == "sobol":
        kwargs["qmc_type"] = "sobol"
    if algorithm == "grid":
        return _AskTellGridSampler(grid or grid_values(parameters), **kwargs)
    with warnings.catch_warnings():
        # QMCSampler is "experimental" and sigma0 "deprecated" (Optuna 4.9, removal in 6.0):
        # both work in the pinned Optuna, and the warnings would only alarm a workshop.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return factory(**kwargs)


def _check_ignored_setting(algorithm: str, name: str, value: str) -> None:
    if name == "base_estimator" and value != "GP":
        raise ValueError(
            f"base_estimator {value!r}: Optuna's GPSampler is a Gaussian process only (GP)"
        )
    _say(f"algorithmSetting {name}={value} of {algorithm} has no Optuna equivalent; ignored")


def _tidy(value: float) -> float:
    """Drop float noise such as 0.30000000000000004 so trials get the value a person wrote."""
    return float(f"{value:.12g}")


def _as_string(value: Any) -> str:
    if isinstance(value, float):
        return repr(_tidy(value))
    return str(value)


# --- Trial specs -----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]+)\}")
_META_REFERENCE = re.compile(
    r"\$\{trialSpec\.(.+?)\}"
)  # Katib's TrialTemplateMetaReplaceFormatRegex


def render_trial_spec(plan: Plan, assignments: Mapping[str, str], trial_name: str) -> dict:
    """The trialSpec of one trial: placeholders filled in, named after the trial."""
    values: dict[str, str] = {}
    for tp in plan.trial_parameters:
        reference = str(tp.get("reference", ""))
        meta = _META_REFERENCE.search(reference)
        if meta is not None:
            values[tp["name"]] = _meta_value(meta.group(1), plan, trial_name)
        elif reference in assignments:
            values[tp["name"]] = assignments[reference]
        else:
            raise ValueError(
                f"trialParameter {tp.get('name')!r} references {reference!r}, which is not one "
                f"of the parameters {sorted(assignments)}"
            )
    doc = _substitute(copy.deepcopy(plan.trial_spec), values)
    left = sorted(set(_PLACEHOLDER.findall(json.dumps(doc))))
    if left:
        raise ValueError(f"trialSpec uses ${{trialParameters.x}} not in trialParameters: {left}")
    metadata = doc.setdefault("metadata", {})
    metadata["name"] = trial_name
    metadata["namespace"] = plan.namespace
    return doc


def _meta_value(key: str, plan: Plan, trial_name: str) -> str:
    spec_meta = plan.trial_spec.get("metadata") or {}
    simple = {
        "Name": trial_name,
        "Namespace": plan.namespace,
        "Kind": plan.trial_spec.get("kind", ""),
        "APIVersion": plan.trial_spec.get("apiVersion", ""),
    }
    if key in simple:
        return simple[key]
    indexed = re.fullmatch(r"(Labels|Annotations)\[(.+)\]", key)
    if indexed:
        found = (spec_meta.get(indexed.group(1).lower()) or {}).get(indexed.group(2))
        if found is not None:
            return str(found)
    raise ValueError(f"illegal reference of trial metadata: ${{trialSpec.{key}}}")


def _substitute(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), node)
    if isinstance(node, list):
        return [_substitute(v, values) for v in node]
    if isinstance(node, dict):
        return {_substitute(k, values): _substitute(v, values) for k, v in node.items()}
    return node


def trial_name(experiment: str, taken: set[str]) -> str:
    """`<experiment>-<8 chars>`, as Katib's suggestion controller names trials."""
    while True:
        name = f"{experiment}-{''.join(random.choices(NAME_ALPHABET, k=8))}"
        if name not in taken:
            return name


# --- Metrics -------------------------------------------------------------------------------


def parse_text_metrics(
    text: str, names: list[str], filters: list[str] | None = None
) -> list[tuple[str, float]]:
    """(name, value) in order of appearance, as Katib's TEXT parser reads a log or file."""
    regexes = [re.compile(f) for f in (filters or [DEFAULT_FILTER])]
    found: list[tuple[str, float]] = []
    for line in text.splitlines():
        # Katib skips lines that mention no metric name before running the filters.
        if not any(n in line for n in names):
            continue
        for regex in regexes:
            for match in regex.finditer(line):
                name, value = match.group(1).strip(), match.group(2).strip()
                number = _float(value)
                if name in names and number is not None:
                    found.append((name, number))
    return found


def parse_json_metrics(text: str, names: list[str]) -> list[tuple[str, float]]:
    """(name, value) from JSON lines; like Katib, only string values count ("0.9", not 0.9)."""
    found: list[tuple[str, float]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"metrics file line {number} is not JSON: {e}") from None
        for name in names:
            value = record.get(name)
            if isinstance(value, str) and _float(value) is not None:
                found.append((name, float(value)))
    return found


def summarise(observations: list[tuple[str, float]]) -> dict[str, dict[str, float]]:
    """metric -> latest, min and max, as Katib stores a trial's observation."""
    by_name: dict[str, list[float]] = {}
    for name, value in observations:
        by_name.setdefault(name, []).append(value)
    return {n: {"latest": v[-1], "min": min(v), "max": max(v)} for n, v in by_name.items()}


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def collect_metrics(plan: Plan, paths: PathMap) -> tuple[dict, str]:
    """The trial's metrics from its metrics file, and a note.

    StdOut's file is what the wrapped primary container printed; no file means no pod was
    wrapped (primaryPodLabels matched none) or the program never wrote it.
    """
    if plan.collector == "None":
        return {}, ""
    path = paths.host(plan.metrics_file)
    if not path.is_file():
        return {}, f"metrics file {plan.metrics_file} ({path}) was not written"
    text = path.read_text(errors="replace")
    try:
        if plan.collector == "File" and plan.file_format.upper() == "JSON":
            observations = parse_json_metrics(text, plan.metric_names)
        else:
            observations = parse_text_metrics(text, plan.metric_names, plan.filters)
    except ValueError as e:
        return {}, str(e)
    return summarise(observations), ""


def objective_value(plan: Plan, metrics: Mapping[str, Mapping[str, float]]) -> float | None:
    m = metrics.get(plan.objective_metric)
    return None if m is None else m[plan.strategy]


def better(plan: Plan, value: float, than: float | None) -> bool:
    if than is None:
        return True
    return value > than if plan.objective_type == "maximize" else value < than


# --- Katib's pod webhook ---------------------------------------------------------------------


def katib_command(argv: Sequence[str], collector: str, metrics_file: str) -> list[str]:
    """The primary container's command + args as Katib's webhook rewrites them (wrapWorkerContainer).

    argv is the container's command followed by its args. A leading `sh -c` or `bash -c`
    (exactly those words) stays the shell; everything else is joined with single spaces,
    unquoted, into the one argument of that shell, followed by StdOut's redirect to the metrics
    file and the completion mark in the file's folder. Katib writes the mark's name `$$$$.pid`,
    which Kubernetes' `$$` escape turns into the `$$.pid` returned here: the shell's own pid.
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError(
            "the primary container has no command or args (Katib would read the image)"
        )
    shell = ["sh", "-c"]
    if len(argv) > 1 and argv[0] in ("sh", "bash") and argv[1] == "-c":
        shell, argv = argv[:2], argv[2:]
    if collector == "StdOut":
        argv.append(f"1>{metrics_file} 2>&1")
    folder = posixpath.dirname(metrics_file)
    argv += ["&&", f"echo {TRAINING_COMPLETED} > {folder}/$$.pid"]
    return [*shell, " ".join(argv)]


def is_primary_pod(labels: Mapping[str, str], primary: Mapping[str, str] | None) -> bool:
    """Whether the webhook treats a pod as the trial's primary (isPrimaryPod; None: every pod)."""
    return primary is None or all(labels.get(k) == v for k, v in primary.items())


class _Webhook:
    """operators.WrapCommand for one trial: Katib's pod webhook over each pod the job starts."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.wrapped: list[tuple[str, int]] = []

    def __call__(
        self, replica: operators.Replica, labels: Mapping[str, str], paths: PathMap
    ) -> list[str] | None:
        name = self.plan.primary_container
        names = [c.get("name") for c in replica.pod_spec.get("containers") or []]
        if replica.container.get("name") != name:
            if name not in names:
                # mutatePodEnv fails for every pod of the trial without it: the pod is refused.
                raise ValueError(
                    f"Katib's pod webhook refuses {replica.replica_type.lower()}-"
                    f"{replica.index}'s pod: unable to find primary container {name!r} in "
                    f"mutated pod containers {names}"
                )
            raise ValueError(
                f"primaryContainerName {name!r} is not the container the harness runs in "
                f"{replica.replica_type.lower()}-{replica.index}'s pod "
                f"({replica.container.get('name')!r}): it runs one container per pod"
            )
        if self.plan.collector not in WRAPPED_COLLECTORS or not is_primary_pod(
            labels, self.plan.primary_pod_labels
        ):
            return None
        self.wrapped.append(replica.key)
        if len(self.wrapped) > 1:
            raise ValueError(
                f"primaryPodLabels {self.plan.primary_pod_labels} match several pods "
                f"{self.wrapped}: Katib wraps each, the harness gives a trial one metrics folder"
            )
        argv = [*replica.container.get("command", []), *replica.container.get("args", [])]
        # Paths are mapped word by word, as for any command, before Katib joins the words.
        local = [_local_word(paths.rewrite(str(a))) for a in argv]
        metrics_file = str(paths.host(self.plan.metrics_file))  # its folder: the emptyDir's
        shell, _, script = katib_command(local, self.plan.collector, metrics_file)
        found = shutil.which(shell)
        if found is None:
            raise FileNotFoundError(f"shell {shell!r} of Katib's wrapped command is not installed")
        return [found, "-c", script]


def _local_word(word: str) -> str:
    # An interpreter named by its image path is this one; `python` alone is found on PATH, where
    # containers.local_env puts this interpreter's folder first.
    return sys.executable if word in PYTHONS and "/" in word else word


def completed_marks(plan: Plan, paths: PathMap) -> list[str]:
    """The `<pid>.pid` files in the metrics folder that say the wrapped command completed."""
    folder = paths.host(posixpath.dirname(plan.metrics_file))
    return sorted(
        f.name
        for f in folder.glob("*.pid")
        if f.stem.isdigit() and f.read_text(errors="replace").strip() == TRAINING_COMPLETED
    )


# --- Running trials ------------------------------------------------------------------------


def run_trial(
    plan: Plan,
    trial: Trial,
    doc: dict,
    *,
    timeout: float,
    env: Mapping[str, str] | None,
    cancel: threading.Event | None = None,
    runtimes: Iterable[Mapping] = (),
) -> Trial:
    """Run one trial's job to its end and read its metrics; never raises for a trial failure.

    runtimes: the TrainingRuntimes a TrainJob trial may name besides the stock ones.
    """
    start = time.monotonic()
    assert trial.workdir is not None
    paths = PathMap(workdir=trial.workdir)
    if plan.collector in WRAPPED_COLLECTORS:
        # Katib mounts an emptyDir at the metrics file's folder; here it is a trial folder.
        paths.add(posixpath.dirname(plan.metrics_file)).mkdir(parents=True, exist_ok=True)
    webhook = _Webhook(plan)
    # mutatePodEnv gives the primary container the trial's name (the one container run here).
    env = {**(env or {}), "KATIB_TRIAL_NAME": trial.name}
    try:
        job = _run_job(plan, doc, trial.workdir, timeout, env, paths, cancel, runtimes, webhook)
    except Exception as e:  # a trial that cannot start fails, as its pod would
        trial.status, trial.message = "Failed", f"{type(e).__name__}: {e}"
        trial.seconds = time.monotonic() - start
        return trial
    trial.job = job
    trial.metrics, note = collect_metrics(plan, paths)
    trial.objective = objective_value(plan, trial.metrics)
    if plan.collector != "None" and paths.host(plan.metrics_file).is_file():
        trial.metrics_log = paths.host(plan.metrics_file)
    if not job.succeeded:
        trial.status = "Failed"
        trial.message = f"{job.reason}: {job.message}".strip(": ")
    elif webhook.wrapped and not completed_marks(plan, paths):
        # The collector waits for the wrapped shell's mark; without it the sidecar exits with an
        # error (pns.go, WaitPIDs) and fails the primary pod, and with it the trial.
        trial.status = "Failed"
        trial.message = (
            f"metrics collector: training container is failed: no <pid>.pid in "
            f"{posixpath.dirname(plan.metrics_file)} says {TRAINING_COMPLETED} (the command "
            "ended without running Katib's completion mark)"
        )
    elif plan.collector != "None" and trial.objective is None:
        trial.status = "MetricsUnavailable"
        trial.message = note or f"objective metric {plan.objective_metric} was not reported"
    else:
        trial.status = "Succeeded"
    trial.seconds = time.monotonic() - start
    return trial


def _run_job(
    plan: Plan,
    doc: dict,
    workdir: Path,
    timeout: float,
    env: Mapping[str, str] | None,
    paths: PathMap,
    cancel: threading.Event | None,
    runtimes: Iterable[Mapping],
    wrap: _Webhook,
) -> JobResult:
    if doc.get("kind") == "Job":
        return batch.run_batch_job(
            doc,
            workdir=workdir,
            timeout=timeout,
            env=env,
            paths=paths,
            container_name=plan.primary_container,
            cancel=cancel,
            wrap=wrap,
        )
    from tests.harness import jobs

    return jobs.run_job(
        doc,
        workdir=workdir,
        timeout=timeout,
        env=env,
        paths=paths,
        cancel=cancel,
        runtimes=runtimes,
        wrap=wrap,
    )


# --- The experiment ------------------------------------------------------------------------


def run_experiment(
    doc: dict,
    *,
    workdir: Path,
    timeout: float = 3600.0,
    env: Mapping[str, str] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    runtimes: Iterable[Mapping] = (),
) -> ExperimentResult:
    """Run the Experiment's trials here until Katib would stop it; report like Katib does.

    Raises ValueError before any trial runs when the Experiment asks for something the harness
    cannot do (an algorithm without an Optuna equivalent, an unknown setting, ...).
    """
    plan = plan_experiment(doc)
    workdir = Path(workdir)
    (workdir / "trials").mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=plan.objective_type, sampler=plan.sampler)
    run = _Run(plan, study, workdir, env, on_trial, time.monotonic() + timeout, list(runtimes))
    _say(_headline(plan))
    started = time.monotonic()
    run.loop()
    reason = run.outcome or _ended_without_condition(plan, run)
    message, succeeded = OUTCOMES[reason]
    result = ExperimentResult(
        name=plan.name,
        trials=run.trials,
        succeeded=succeeded,
        reason=reason,
        message=message,
        optimal_trial=run.best,
        objective_metric=plan.objective_metric,
        parameter_names=[p.name for p in plan.parameters],
        conditions=_conditions(reason),
        seconds=time.monotonic() - started,
    )
    _say(
        f"experiment {plan.name} {'Succeeded' if succeeded else 'Failed'} ({reason}): "
        f"{len(run.trials)} trials in {result.seconds:.1f} s; {_best_line(plan, run.best)}"
    )
    return result


def run_smoke(
    case: Case,
    manifest: str | Path = "manifests/katib-experiment.yaml",
    *,
    workdir: Path,
    timeout: float = 900.0,
) -> ExperimentResult:
    """A case's Experiment in smoke form, as `python -m tests.harness run --smoke` runs it.

    case.toml's overrides for the manifest are applied and the result validated strictly (a
    problem is a ValueError before any trial starts); trials run with the TrainingRuntimes beside
    the manifest; the trials table and `kubectl describe`'s status are printed for the log.
    """
    path = case.path / manifest
    doc = manifests.apply_overrides(manifests.load(path)[0], case.overrides_for(path))
    problems = manifests.validate(doc)
    if problems:
        raise ValueError(f"{path} with case.toml's overrides: " + "; ".join(problems))
    runtimes = trainer.runtimes_beside(path)
    result = run_experiment(doc, workdir=workdir, timeout=timeout, runtimes=runtimes)
    print(result.format_trials())
    print(result.describe())
    return result


def outside_search_space(doc: Mapping, trials: Iterable[Trial]) -> list[str]:
    """What the trials were given that the Experiment's search space does not hold; empty if all
    is in it. Each trial gets every parameter and no other: a double or an int within
    [min, max] (an int a whole number on its step), a categorical or discrete value of its list.
    """
    space = [_parameter(p) for p in (doc.get("spec") or {}).get("parameters") or []]
    names = sorted(p.name for p in space)
    problems = []
    for t in trials:
        if sorted(t.parameters) != names:
            problems.append(f"{t.name}: got {sorted(t.parameters)}, the space has {names}")
        for p in space:
            value = t.parameters.get(p.name)
            if value is not None and not _in_space(p, value):
                problems.append(f"{t.name}: {p.name}={value} is outside {_space_text(p)}")
    return problems


def _in_space(p: Parameter, value: str) -> bool:
    if p.type == "categorical":
        return value in p.values
    number = _float(value)
    if number is None:
        return False
    if p.type == "discrete":
        return number in {_float(v) for v in p.values}
    if not float(p.min) <= number <= float(p.max):
        return False
    if p.type == "int":
        step = int(p.step or 1)
        return number.is_integer() and (int(number) - int(p.min)) % step == 0
    return True


def _space_text(p: Parameter) -> str:
    if p.type in ("categorical", "discrete"):
        return f"{p.type} {p.values}"
    return f"{p.type} [{p.min}, {p.max}]" + (f" step {p.step}" if p.step else "")


class _Run:
    """The controller loop: keep up to parallelTrialCount trials running until a stop condition."""

    def __init__(
        self,
        plan: Plan,
        study: optuna.Study,
        workdir: Path,
        env: Mapping[str, str] | None,
        on_trial: Callable[[Trial], None] | None,
        deadline: float,
        runtimes: list[Mapping],
    ) -> None:
        self.plan, self.study, self.workdir, self.env = plan, study, workdir, env
        self.runtimes = runtimes
        self.on_trial, self.deadline = on_trial, deadline
        self.trials: list[Trial] = []
        self.best: Trial | None = None
        self.outcome: str | None = None
        self.cancel = threading.Event()
        self.running: dict[Future, tuple[Trial, optuna.trial.Trial]] = {}

    def loop(self) -> None:
        with ThreadPoolExecutor(self.plan.parallel, thread_name_prefix="katib-trial") as pool:
            try:
                while True:
                    while self._may_create():
                        self._create(pool)
                    if not self.running:
                        return
                    done, _ = wait(self.running, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._finish(*self.running.pop(future), future)
            except BaseException:
                # Trials run in their own sessions and would outlive Ctrl-C: stop them.
                self.cancel.set()
                raise

    def _may_create(self) -> bool:
        limit = self.plan.max_trials if self.plan.max_trials is not None else self.plan.grid_size
        return (
            self.outcome is None
            and len(self.running) < self.plan.parallel
            and (limit is None or len(self.trials) < limit)
            and time.monotonic() < self.deadline
        )

    def _create(self, pool: ThreadPoolExecutor) -> None:
        ask = self.study.ask(self.plan.distributions)
        params = {p.name: _as_string(ask.params[p.name]) for p in self.plan.parameters}
        name = trial_name(self.plan.name, {t.name for t in self.trials})
        trial = Trial(name=name, parameters=params, workdir=self.workdir / "trials" / name)
        doc = render_trial_spec(self.plan, params, name)
        self.trials.append(trial)
        _say(f"trial {name} created: {_params_line(params)}")
        remaining = max(1.0, self.deadline - time.monotonic())
        future = pool.submit(
            run_trial,
            self.plan,
            trial,
            doc,
            timeout=remaining,
            env=self.env,
            cancel=self.cancel,
            runtimes=self.runtimes,
        )
        self.running[future] = (trial, ask)

    def _finish(self, trial: Trial, ask: optuna.trial.Trial, future: Future) -> None:
        future.result()
        if trial.status == "Succeeded" and trial.objective is not None:
            self.study.tell(ask, trial.objective)
            if better(self.plan, trial.objective, self.best.objective if self.best else None):
                self.best = trial
        else:
            self.study.tell(ask, state=TrialState.FAIL)
        _say(_finished_line(self.plan, trial, self.best))
        if self.on_trial is not None:
            self.on_trial(trial)
        if self.outcome is None:
            self.outcome = _stop_condition(self.plan, self.trials, self.best)
            if self.outcome is not None and self.running:
                _say(
                    f"{self.outcome}: no new trials; waiting for {len(self.running)} running "
                    "trial(s) to finish, as Katib lets them run"
                )


def _stop_condition(plan: Plan, trials: list[Trial], best: Trial | None) -> str | None:
    """Katib's order (experiment/util/status_util.go): goal, then max failed, then max trials."""
    done = [t for t in trials if t.status != "Running"]
    failed = sum(t.status in ("Failed", "MetricsUnavailable") for t in done)
    if plan.goal is not None and best is not None and best.objective is not None:
        maximize = plan.objective_type == "maximize"
        if (best.objective >= plan.goal) if maximize else (best.objective <= plan.goal):
            return "ExperimentGoalReached"
    if plan.max_failed is not None and failed and failed >= plan.max_failed:
        return "ExperimentFailed"
    if plan.max_trials is not None and len(done) >= plan.max_trials:
        return "ExperimentMaxTrialsReached"
    return None


def _ended_without_condition(plan: Plan, run: _Run) -> str:
    if plan.grid_size is not None and len(run.trials) >= plan.grid_size:
        return "ExperimentSuggestionEndReached"
    return "HarnessTimeout"


def _conditions(reason: str) -> list[dict[str, str]]:
    message, succeeded = OUTCOMES[reason]
    final = "Succeeded" if succeeded else "Failed"
    rows = [
        ("Created", "True", "ExperimentCreated", "Experiment is created"),
        ("Running", "False", "ExperimentRunning", "Experiment is running"),
        (final, "True", reason, message),
    ]
    return [dict(zip(("type", "status", "reason", "message"), r, strict=True)) for r in rows]


# --- Progress lines ------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[katib] {message}", flush=True)


def _headline(plan: Plan) -> str:
    limit = plan.max_trials if plan.max_trials is not None else plan.grid_size
    goal = (
        ""
        if plan.goal is None
        else f", goal {plan.objective_metric} "
        + (f">= {plan.goal:g}" if plan.objective_type == "maximize" else f"<= {plan.goal:g}")
    )
    return (
        f"experiment {plan.name}: {plan.algorithm} ({type(plan.sampler).__name__}) over "
        f"{', '.join(p.name for p in plan.parameters)}; up to {limit} trials, "
        f"{plan.parallel} at a time; {plan.objective_type} {plan.objective_metric}{goal}"
    )


def _params_line(params: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _finished_line(plan: Plan, trial: Trial, best: Trial | None) -> str:
    line = f"trial {trial.name} {trial.status} in {trial.seconds:.1f} s"
    if trial.objective is not None:
        line += f": {plan.objective_metric}={trial.objective:.6g}"
        if best is trial:
            line += " (best so far)"
    if trial.message:
        line += f" ({trial.message[:200]})"
    return line


def _best_line(plan: Plan, best: Trial | None) -> str:
    if best is None:
        return "no trial reported the objective metric"
    return (
        f"best {best.name} {plan.objective_metric}={best.objective:.6g} with "
        f"{_params_line(best.parameters)}"
    )


def _age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60}s" if seconds < 600 else f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60}m"
