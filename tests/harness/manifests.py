"""Load, override and strictly validate the Kubernetes and Kubeflow manifests of a case study.

The SDK models (kubernetes client, kubeflow-training, kserve, the Trainer and Katib API models)
silently drop fields they do not know, so a misspelled `commnd:` would survive a deserialise and
only fail on a cluster. Here every document is walked field by field against those models (or
against the schemas carried in tests.harness.schemas where no model exists), and every unknown
field, missing required field, wrong type and bad enum value is reported with its full path:

    spec.tfReplicaSpecs.Worker.template.spec.containers[0].commnd: unknown field (did you mean 'command'?)
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.harness.schemas import (
    ANY,
    BOOL,
    INT,
    INT_OR_STR,
    NUMBER,
    QUANTITY,
    STR,
    TIME,
    Enum,
    ListOf,
    MapOf,
    Node,
    Obj,
    Ref,
    Scalar,
    istio,
    kustomize,
    seldon,
    spark,
)

__all__ = [
    "SUPPORTED_KINDS",
    "ManifestError",
    "apply_overrides",
    "check",
    "containers",
    "find",
    "load",
    "validate",
    "validate_file",
]

# --- errors -----------------------------------------------------------------------------------


class ManifestError(ValueError):
    """A manifest that would not pass the API server or the operator; one error per line."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


Error = tuple[str, str]  # (path, message)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (datetime, date)):
        return "timestamp"
    names = {int: "int", float: "number", str: "string", list: "list", dict: "object"}
    return names.get(type(value), type(value).__name__)


def _did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- adapting the SDK models to schema nodes --------------------------------------------------

# Searched in this order for a class named in an openapi-generator type string; kserve last
# because importing it costs seconds and only InferenceService needs it.
_OPENAPI_MODULES = ("kubernetes.client.models", "kubeflow.training.models", "kserve.models")

# kserve's generated models name a few classes it does not ship; these have kubernetes twins.
_OPENAPI_ALIASES = {
    "K8sIoApiAppsV1DeploymentStrategy": "V1DeploymentStrategy",
    "K8sIoApiAutoscalingV2MetricSpec": "V2MetricSpec",
    "K8sIoApiAutoscalingV2HorizontalPodAutoscalerBehavior": "V2HorizontalPodAutoscalerBehavior",
}

_OPENAPI_SCALARS: dict[str, Node] = {
    "str": STR,
    "int": INT,
    "float": NUMBER,
    "bool": BOOL,
    "datetime": TIME,
    "date": TIME,
    # In the kubernetes models reachable from these kinds, `object` is always an IntOrString
    # (ports, targetPort, maxSurge, maxUnavailable); managedFields is overridden below.
    "object": INT_OR_STR,
    "ResourceQuantity": QUANTITY,
    "Quantity": QUANTITY,
}

_POD_RESTART = Enum(("Always", "OnFailure", "Never"))
_PULL_POLICY = Enum(("Always", "Never", "IfNotPresent"))
_QUANTITIES = MapOf(QUANTITY)


def _replica_specs(*replica_types: str) -> MapOf:
    return MapOf(Ref("KubeflowOrgV1ReplicaSpec"), keys=Enum(replica_types))


# What the models type too loosely: enums they keep as plain strings, quantities they type as
# strings although YAML gives `cpu: 1` as an int, and replica maps whose keys the operator checks.
# Keyed by (model class name, JSON field name).
_FIELD_OVERRIDES: dict[tuple[str, str], Node] = {
    ("KubeflowOrgV1ReplicaSpec", "restartPolicy"): Enum(
        ("Always", "OnFailure", "Never", "ExitCode")
    ),
    ("KubeflowOrgV1RunPolicy", "cleanPodPolicy"): Enum(("All", "Running", "None")),
    # Training Operator 1.9 replica types; "Master" is TFJob's older name for "Chief".
    ("KubeflowOrgV1TFJobSpec", "tfReplicaSpecs"): _replica_specs(
        "Chief", "Master", "Worker", "PS", "Evaluator"
    ),
    ("KubeflowOrgV1PyTorchJobSpec", "pytorchReplicaSpecs"): _replica_specs("Master", "Worker"),
    ("KubeflowOrgV1XGBoostJobSpec", "xgbReplicaSpecs"): _replica_specs("Master", "Worker"),
    ("V1PodSpec", "restartPolicy"): _POD_RESTART,
    ("IoK8sApiCoreV1PodSpec", "restartPolicy"): _POD_RESTART,
    ("V1Container", "imagePullPolicy"): _PULL_POLICY,
    ("IoK8sApiCoreV1Container", "imagePullPolicy"): _PULL_POLICY,
    ("V1ResourceRequirements", "limits"): _QUANTITIES,
    ("V1ResourceRequirements", "requests"): _QUANTITIES,
    ("V1VolumeResourceRequirements", "limits"): _QUANTITIES,
    ("V1VolumeResourceRequirements", "requests"): _QUANTITIES,
    ("V1PodSpec", "overhead"): _QUANTITIES,
    ("V1EmptyDirVolumeSource", "sizeLimit"): QUANTITY,
    ("V1ManagedFieldsEntry", "fieldsV1"): ANY,
    # Katib v1beta1 (the API model keeps all of these as free strings).
    ("V1beta1ParameterSpec", "parameterType"): Enum(("double", "int", "discrete", "categorical")),
    ("V1beta1AlgorithmSpec", "algorithmName"): Enum(
        (
            "random",
            "grid",
            "tpe",
            "multivariate-tpe",
            "cmaes",
            "sobol",
            "bayesianoptimization",
            "hyperband",
            "enas",
            "darts",
            "pbt",
        )
    ),
    ("V1beta1ObjectiveSpec", "type"): Enum(("maximize", "minimize")),
    ("V1beta1CollectorSpec", "kind"): Enum(
        ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None")
    ),
}

# Fields the models leave optional but the Katib controller rejects an Experiment without.
_EXTRA_REQUIRED: dict[str, frozenset[str]] = {
    "V1beta1ExperimentSpec": frozenset({"objective", "algorithm", "parameters", "trialTemplate"}),
    "V1beta1ObjectiveSpec": frozenset({"type", "objectiveMetricName"}),
    "V1beta1AlgorithmSpec": frozenset({"algorithmName"}),
    "V1beta1ParameterSpec": frozenset({"name", "parameterType", "feasibleSpace"}),
    "V1beta1TrialParameterSpec": frozenset({"name", "reference"}),
}

# The training SDK's client-side validation requires runPolicy, but the CRD does not and the
# operator defaults it; upstream examples omit it, so a manifest may too.
_NOT_REQUIRED: frozenset[tuple[str, str]] = frozenset(
    (spec, "runPolicy")
    for spec in (
        "KubeflowOrgV1TFJobSpec",
        "KubeflowOrgV1PyTorchJobSpec",
        "KubeflowOrgV1XGBoostJobSpec",
    )
)

_SETTER_REQUIRED = re.compile(r"Invalid value for `(\w+)`, must not be `None`")


@functools.cache
def _resolve_ref(name: str, module: str | None) -> Node:
    if module is not None:
        return _model_node(getattr(importlib.import_module(module), name))
    if name in _OPENAPI_SCALARS:
        return _OPENAPI_SCALARS[name]
    name = _OPENAPI_ALIASES.get(name, name)
    for module_name in _OPENAPI_MODULES:
        models = importlib.import_module(module_name)
        if hasattr(models, name):
            return _model_node(getattr(models, name))
    # kserve names a handful of classes that exist in no installed package; accept anything
    # there rather than fail a valid manifest.
    return ANY


def _resolve(node: Node) -> Node:
    while isinstance(node, Ref):
        node = _resolve_ref(node.name, node.module)
    return node


@functools.cache
def _model_node(cls: type) -> Node:
    if hasattr(cls, "openapi_types"):
        return _openapi_obj(cls)
    return _pydantic_node(cls)


def _openapi_type(type_string: str) -> Node:
    if match := re.fullmatch(r"list\[(.+)\]", type_string):
        return ListOf(_openapi_type(match[1]))
    if match := re.fullmatch(r"dict\(str, (.+)\)", type_string):
        return MapOf(_openapi_type(match[1]))
    return Ref(type_string)


def _openapi_obj(cls: type) -> Obj:
    name = cls.__name__
    # Required fields are only visible in the setters' client-side validation; one class per
    # generated file, so reading the file is cheaper than inspect.getsource.
    source = Path(sys.modules[cls.__module__].__file__).read_text(encoding="utf-8")
    required = {
        cls.attribute_map[attr]
        for attr in _SETTER_REQUIRED.findall(source)
        if attr in cls.attribute_map
    }
    required = {field for field in required if (name, field) not in _NOT_REQUIRED}

    def fields() -> dict[str, Node]:
        return {
            cls.attribute_map[attr]: _FIELD_OVERRIDES.get(
                (name, cls.attribute_map[attr]), _openapi_type(type_string)
            )
            for attr, type_string in cls.openapi_types.items()
        }

    return Obj(name, fields, frozenset(required) | _EXTRA_REQUIRED.get(name, frozenset()))


def _pydantic_node(cls: type) -> Node:
    model_fields = cls.model_fields
    # openapi-generator's oneOf wrappers (Quantity, IntOrString) hold a plain scalar.
    if "actual_instance" in model_fields and "one_of_schemas" in model_fields:
        return _annotation_node(model_fields["actual_instance"].annotation)
    name = cls.__name__

    def json_name(attr: str) -> str:
        return model_fields[attr].alias or attr

    def fields() -> dict[str, Node]:
        return {
            json_name(attr): _FIELD_OVERRIDES.get(
                (name, json_name(attr)), _annotation_node(info.annotation)
            )
            for attr, info in model_fields.items()
        }

    required = {json_name(attr) for attr, info in model_fields.items() if info.is_required()}
    return Obj(name, fields, frozenset(required) | _EXTRA_REQUIRED.get(name, frozenset()))


_PYTHON_SCALARS: dict[Any, Node] = {
    str: STR,
    int: INT,
    bool: BOOL,
    float: NUMBER,
    datetime: TIME,
    date: TIME,
}


def _scalar_union(nodes: list[Node]) -> Node:
    if not all(isinstance(node, Scalar) for node in nodes):
        return ANY
    accepted = {t for node in nodes for t in node.types}
    if object in accepted:
        return ANY
    if accepted <= {int, float}:
        return NUMBER
    if accepted <= {int, float, str} and float in accepted:
        return QUANTITY
    if accepted == {int, str}:
        return INT_OR_STR
    return Scalar(" or ".join(node.name for node in nodes), tuple(accepted))


def _annotation_node(annotation: Any) -> Node:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _annotation_node(args[0])
    if origin in (typing.Union, types.UnionType):
        nodes = [_annotation_node(arg) for arg in args if arg is not type(None)]
        return nodes[0] if len(nodes) == 1 else _scalar_union(nodes)
    if origin in (list, set, frozenset):
        return ListOf(_annotation_node(args[0]))
    if origin is dict:
        return MapOf(_annotation_node(args[1]))
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return _model_node(annotation)
    return _PYTHON_SCALARS.get(annotation, ANY)


# --- the walk ---------------------------------------------------------------------------------


def _walk(node: Node, value: Any, path: str, errors: list[Error]) -> None:
    node = _resolve(node)
    # YAML `key:` with nothing after it; the API server treats null as unset, so only a
    # required field (checked by its parent) can be wrong here.
    if value is None:
        return
    if isinstance(node, Scalar):
        _check_scalar(node, value, path, errors)
    elif isinstance(node, Enum):
        if not isinstance(value, str):
            errors.append((path, f"expected string, got {_type_name(value)}"))
        elif value not in node.values:
            allowed = ", ".join(node.values)
            errors.append((path, f"must be one of [{allowed}], got {value!r}"))
    elif isinstance(node, ListOf):
        if not isinstance(value, list):
            errors.append((path, f"expected list, got {_type_name(value)}"))
            return
        for index, item in enumerate(value):
            _walk(node.item, item, f"{path}[{index}]", errors)
    elif isinstance(node, MapOf):
        _walk_map(node, value, path, errors)
    else:
        _walk_obj(node, value, path, errors)


def _check_scalar(node: Scalar, value: Any, path: str, errors: list[Error]) -> None:
    if node is ANY:
        return
    # bool is an int to Python but not to Kubernetes: `replicas: true` is wrong.
    is_bool = isinstance(value, bool)
    if (is_bool and bool not in node.types) or not isinstance(value, node.types):
        errors.append((path, f"expected {node.name}, got {_type_name(value)}"))


def _walk_map(node: MapOf, value: Any, path: str, errors: list[Error]) -> None:
    if not isinstance(value, dict):
        errors.append((path, f"expected object, got {_type_name(value)}"))
        return
    for key, item in value.items():
        key_path = _join(path, str(key))
        if not isinstance(key, str):
            errors.append((key_path, f"key must be a string, got {_type_name(key)}"))
        elif node.keys is not None and key not in node.keys.values:
            allowed = ", ".join(node.keys.values)
            errors.append(
                (
                    key_path,
                    f"key must be one of [{allowed}]{_did_you_mean(key, allowed.split(', '))}",
                )
            )
            continue
        _walk(node.value, item, key_path, errors)


def _walk_obj(node: Obj, value: Any, path: str, errors: list[Error]) -> None:
    if not isinstance(value, dict):
        errors.append((path, f"expected object, got {_type_name(value)}"))
        return
    fields = node.field_map()
    for key, item in value.items():
        key_path = _join(path, str(key))
        if key not in fields:
            errors.append((key_path, f"unknown field{_did_you_mean(str(key), fields)}"))
        else:
            _walk(fields[key], item, key_path, errors)
    for key in sorted(node.required):
        if value.get(key) is None:
            errors.append((_join(path, key), "missing required field"))


# --- kinds ------------------------------------------------------------------------------------

Check = Callable[[dict, str], list[Error]]


@dataclass(frozen=True)
class _Kind:
    api_version: str
    schema: Node
    # Top-level fields every object of the kind needs (the models mark none of these).
    required: tuple[str, ...] = ("metadata", "spec")
    checks: tuple[Check, ...] = ()


_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]*)\}")


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, _join(path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def _dicts(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _check_experiment(doc: dict, prefix: str) -> list[Error]:
    """What Katib's admission webhook checks across fields of the trial template."""
    spec = doc.get("spec")
    template = spec.get("trialTemplate") if isinstance(spec, dict) else None
    if not isinstance(template, dict):
        return []
    base = _join(prefix, "spec.trialTemplate")
    errors: list[Error] = []
    trial_spec = template.get("trialSpec")
    if isinstance(trial_spec, dict):
        # trialSpec is a free object to the Experiment model: validate it as the kind it names.
        errors += _validate_doc(trial_spec, f"{base}.trialSpec", embedded=True)

    parameter_names = [p.get("name") for p in _dicts(spec.get("parameters"))]
    declared: dict[str, int] = {}
    for index, trial_parameter in enumerate(template.get("trialParameters") or []):
        if not isinstance(trial_parameter, dict):
            continue
        declared.setdefault(trial_parameter.get("name"), index)
        reference = trial_parameter.get("reference")
        # A reference may also name trial metadata, e.g. ${trialSpec.Name}.
        if (
            isinstance(reference, str)
            and reference not in parameter_names
            and not reference.startswith("${trialSpec.")
        ):
            errors.append(
                (
                    f"{base}.trialParameters[{index}].reference",
                    f"{reference!r} is not a parameter in spec.parameters"
                    f"{_did_you_mean(reference, map(str, parameter_names))}",
                )
            )

    if not isinstance(trial_spec, dict):
        return errors
    used = set()
    for path, text in _strings(trial_spec, f"{base}.trialSpec"):
        for name in _PLACEHOLDER.findall(text):
            used.add(name)
            if name not in declared:
                errors.append(
                    (
                        path,
                        f"${{trialParameters.{name}}} is not declared in "
                        f"spec.trialTemplate.trialParameters{_did_you_mean(name, map(str, declared))}",
                    )
                )
    for name, index in declared.items():
        if name not in used:
            errors.append(
                (
                    f"{base}.trialParameters[{index}].name",
                    f"{name!r} is declared but trialSpec never uses ${{trialParameters.{name}}}",
                )
            )
    return errors


_KINDS: dict[str, _Kind] = {
    "TFJob": _Kind("kubeflow.org/v1", Ref("KubeflowOrgV1TFJob")),
    "PyTorchJob": _Kind("kubeflow.org/v1", Ref("KubeflowOrgV1PyTorchJob")),
    "XGBoostJob": _Kind("kubeflow.org/v1", Ref("KubeflowOrgV1XGBoostJob")),
    "TrainJob": _Kind(
        "trainer.kubeflow.org/v1alpha1",
        Ref("TrainerV1alpha1TrainJob", "kubeflow_trainer_api.models"),
    ),
    "TrainingRuntime": _Kind(
        "trainer.kubeflow.org/v1alpha1",
        Ref("TrainerV1alpha1TrainingRuntime", "kubeflow_trainer_api.models"),
    ),
    "ClusterTrainingRuntime": _Kind(
        "trainer.kubeflow.org/v1alpha1",
        Ref("TrainerV1alpha1ClusterTrainingRuntime", "kubeflow_trainer_api.models"),
    ),
    "Experiment": _Kind(
        "kubeflow.org/v1beta1",
        Ref("V1beta1Experiment", "kubeflow_katib_api.models"),
        checks=(_check_experiment,),
    ),
    "InferenceService": _Kind("serving.kserve.io/v1beta1", Ref("V1beta1InferenceService")),
    "SeldonDeployment": _Kind("machinelearning.seldon.io/v1", seldon.SELDON_DEPLOYMENT),
    "SparkApplication": _Kind("sparkoperator.k8s.io/v1beta2", spark.SPARK_APPLICATION),
    # Istio routes traffic on Kubeflow: a weighted split across InferenceServices in Standard mode.
    "VirtualService": _Kind("networking.istio.io/v1", istio.VIRTUAL_SERVICE),
    "Secret": _Kind("v1", Ref("V1Secret"), ("metadata",)),
    "ConfigMap": _Kind("v1", Ref("V1ConfigMap"), ("metadata",)),
    "Service": _Kind("v1", Ref("V1Service")),
    "PersistentVolumeClaim": _Kind("v1", Ref("V1PersistentVolumeClaim")),
    "ServiceAccount": _Kind("v1", Ref("V1ServiceAccount"), ("metadata",)),
    "Deployment": _Kind("apps/v1", Ref("V1Deployment")),
    "Job": _Kind("batch/v1", Ref("V1Job")),
    "Role": _Kind("rbac.authorization.k8s.io/v1", Ref("V1Role"), ("metadata",)),
    "RoleBinding": _Kind("rbac.authorization.k8s.io/v1", Ref("V1RoleBinding"), ("metadata",)),
    "ClusterRole": _Kind("rbac.authorization.k8s.io/v1", Ref("V1ClusterRole"), ("metadata",)),
    "ClusterRoleBinding": _Kind(
        "rbac.authorization.k8s.io/v1", Ref("V1ClusterRoleBinding"), ("metadata",)
    ),
    # kustomize would default both headers; the case studies always write them.
    "Kustomization": _Kind("kustomize.config.k8s.io/v1beta1", kustomize.KUSTOMIZATION, ()),
    "Component": _Kind("kustomize.config.k8s.io/v1alpha1", kustomize.COMPONENT, ()),
}

SUPPORTED_KINDS: dict[str, str] = {kind: spec.api_version for kind, spec in _KINDS.items()}


def _validate_doc(doc: Any, prefix: str, embedded: bool = False) -> list[Error]:
    """Errors of one object; `embedded` is a template whose metadata its controller fills in."""
    if not isinstance(doc, dict):
        return [(prefix or "(document)", f"expected object, got {_type_name(doc)}")]
    kind = doc.get("kind")
    kind_path = _join(prefix, "kind")
    if kind is None:
        return [(kind_path, "missing required field")]
    if kind not in _KINDS:
        supported = ", ".join(sorted(_KINDS))
        hint = _did_you_mean(str(kind), _KINDS)
        return [(kind_path, f"unknown kind {kind!r}{hint}; supported kinds: {supported}")]
    spec = _KINDS[kind]
    errors: list[Error] = []
    api_version = doc.get("apiVersion")
    if api_version is None:
        errors.append((_join(prefix, "apiVersion"), "missing required field"))
    elif api_version != spec.api_version:
        message = f"{kind} expects apiVersion {spec.api_version!r}, got {api_version!r}"
        errors.append((_join(prefix, "apiVersion"), message))
    for field in spec.required:
        if doc.get(field) is None and not (embedded and field == "metadata"):
            errors.append((_join(prefix, field), "missing required field"))
    metadata = doc.get("metadata")
    unnamed = isinstance(metadata, dict) and not (
        metadata.get("name") or metadata.get("generateName")
    )
    if unnamed and not embedded:
        errors.append((_join(prefix, "metadata.name"), "missing required field"))
    _walk(spec.schema, doc, prefix, errors)
    for check_kind in spec.checks:
        errors += check_kind(doc, prefix)
    return list(dict.fromkeys(errors))  # a field can be required twice; report it once


# --- public API -------------------------------------------------------------------------------


def load(path: Path) -> list[dict]:
    """Every non-empty document of a YAML file, in order."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as stream:
            documents = list(yaml.safe_load_all(stream))
    except yaml.YAMLError as error:
        raise ManifestError([f"{path}: invalid YAML: {error}"]) from error
    loaded = []
    for index, document in enumerate(d for d in documents if d is not None):
        if not isinstance(document, dict):
            raise ManifestError(
                [f"{path}[{index}]: expected a mapping, got {_type_name(document)}"]
            )
        loaded.append(document)
    return loaded


def validate(doc: dict) -> list[str]:
    """Every problem of one manifest as "path: message"; [] when it is valid."""
    return [f"{path}: {message}" for path, message in _validate_doc(doc, "")]


def validate_file(path: Path) -> list[str]:
    """Every problem of every document, each prefixed "file[index] Kind/name: "."""
    errors = []
    for index, doc in enumerate(load(path)):
        metadata = doc.get("metadata")
        name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
        label = f"{path}[{index}] {doc.get('kind', '?')}/{name}"
        errors += [f"{label}: {error}" for error in validate(doc)]
    return errors


def check(doc: dict) -> None:
    """Raise ManifestError listing every problem of the manifest."""
    errors = validate(doc)
    if errors:
        raise ManifestError(errors)


_OVERRIDE_PATH = re.compile(r"[^.\[\]]+(\[\d+\])*(\.[^.\[\]]+(\[\d+\])*)*")
_OVERRIDE_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _override_tokens(path: str) -> list[str | int]:
    if not _OVERRIDE_PATH.fullmatch(path):
        raise KeyError(f"override {path!r}: not a dotted path such as 'spec.containers[0].args'")
    return [int(index) if index else key for key, index in _OVERRIDE_TOKEN.findall(path)]


def _format_tokens(tokens: list[str | int]) -> str:
    text = ""
    for token in tokens:
        text += f"[{token}]" if isinstance(token, int) else _join(text, token)
    return text


def apply_overrides(doc: dict, overrides: Mapping[str, Any]) -> dict:
    """A deep copy of doc with each dotted path set, e.g. {"spec.tfReplicaSpecs.Worker.replicas": 1}.

    Every step but the last must exist, so that a typo in case.toml fails here instead of
    quietly adding a field; a new last key is allowed, and validate() then judges it.
    """
    result = copy.deepcopy(doc)
    for path, value in overrides.items():
        tokens = _override_tokens(path)
        parent: Any = result
        for depth, token in enumerate(tokens):
            last = depth == len(tokens) - 1
            where = _format_tokens(tokens[: depth + 1])
            if isinstance(token, int):
                if not isinstance(parent, list) or not 0 <= token < len(parent):
                    raise KeyError(f"override {path!r}: {where} does not exist in the manifest")
            elif not isinstance(parent, dict) or (not last and token not in parent):
                raise KeyError(f"override {path!r}: {where} does not exist in the manifest")
            if last:
                parent[token] = copy.deepcopy(value)
            else:
                parent = parent[token]
    return result


def find(
    node: object, wanted: Callable[[dict], bool], path: str = ""
) -> Iterator[tuple[str, dict]]:
    """Every object below node (node included) for which wanted() is true, with its path."""
    if isinstance(node, dict):
        if wanted(node):
            yield path, node
        for key, value in node.items():
            yield from find(value, wanted, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from find(value, wanted, f"{path}[{i}]")


def containers(node: object) -> Iterator[tuple[str, dict]]:
    """Every container-like object (a dict naming an image) anywhere in a manifest, with its path.

    For the house rules the case tests check on top of the schema (non-root, sized, one image).
    """
    return find(node, lambda d: isinstance(d.get("image"), str))
