"""Schema nodes that tests.harness.manifests walks, and the schemas carried for kinds with no SDK model.

The SDK models in the environment (kubernetes client, kubeflow-training, kserve, the Trainer and
Katib API models) are adapted to these nodes by manifests.py. SeldonDeployment, SparkApplication
and Kustomization have no model that can live in the main environment, so their schemas are
written here by hand, each module naming the upstream version it follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Scalar:
    """A leaf value; `types` are the Python types YAML may produce for it."""

    name: str
    types: tuple[type, ...]


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]


@dataclass(frozen=True)
class ListOf:
    item: Node


@dataclass(frozen=True)
class MapOf:
    """A map with string keys; `keys` restricts them (replica types, for instance)."""

    value: Node
    keys: Enum | None = None


@dataclass(frozen=True)
class Ref:
    """A model class by name, resolved lazily so that importing a schema imports no SDK.

    With no module, the name is looked up in the openapi-generator model packages
    (kubernetes.client.models, kubeflow.training.models, kserve.models).
    """

    name: str
    module: str | None = None


@dataclass(eq=False)
class Obj:
    """An object with a closed set of fields; `fields` may be a callable for recursive schemas."""

    name: str
    fields: Mapping[str, Node] | Callable[[], Mapping[str, Node]]
    required: frozenset[str] = field(default_factory=frozenset)

    def field_map(self) -> Mapping[str, Node]:
        if callable(self.fields):
            self.fields = self.fields()
        return self.fields


Node = Scalar | Enum | ListOf | MapOf | Ref | Obj

STR = Scalar("string", (str,))
INT = Scalar("int", (int,))
BOOL = Scalar("bool", (bool,))
NUMBER = Scalar("number", (int, float))
# Kubernetes quantities ("500m", "1Gi") are strings in the API but YAML turns `cpu: 1` into an int.
QUANTITY = Scalar("quantity (string or number)", (str, int, float))
INT_OR_STR = Scalar("int or string", (int, str))
# YAML parses an unquoted RFC 3339 timestamp into a datetime.
TIME = Scalar("timestamp string", (str, datetime, date))
ANY = Scalar("any", (object,))

STR_MAP = MapOf(STR)
STR_LIST = ListOf(STR)


def obj(title: str, /, required: tuple[str, ...] = (), **fields: Node) -> Obj:
    """Shorthand for a carried schema: keyword names are the JSON field names (`name` included)."""
    return Obj(title, fields, frozenset(required))
