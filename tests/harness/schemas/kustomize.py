"""Kustomization kustomize.config.k8s.io/v1beta1 and Component v1alpha1, as kustomize 5.x reads them.

Follows api/types/kustomization.go of kubernetes-sigs/kustomize v5 (what `kubectl kustomize`
embeds), which decodes with DisallowUnknownFields: kustomize itself rejects unknown keys.
Helm, vars, replacements and plugin configuration are checked only for their outer shape.
"""

from __future__ import annotations

from tests.harness.schemas import ANY, BOOL, INT, STR, STR_LIST, STR_MAP, Enum, ListOf, MapOf, obj

SELECTOR = obj(
    "Selector",
    group=STR,
    version=STR,
    kind=STR,
    name=STR,
    namespace=STR,
    labelSelector=STR,
    annotationSelector=STR,
)

PATCH = obj("Patch", path=STR, patch=STR, target=SELECTOR, options=MapOf(BOOL))

IMAGE = obj(
    "Image", required=("name",), name=STR, newName=STR, newTag=STR, digest=STR, tagSuffix=STR
)

GENERATOR_OPTIONS = obj(
    "GeneratorOptions",
    labels=STR_MAP,
    annotations=STR_MAP,
    disableNameSuffixHash=BOOL,
    immutable=BOOL,
)

_GENERATOR_FIELDS = {
    "name": STR,
    "namespace": STR,
    "behavior": Enum(("create", "replace", "merge")),
    "literals": STR_LIST,
    "files": STR_LIST,
    "envs": STR_LIST,
    "env": STR,
    "options": GENERATOR_OPTIONS,
}

LABEL = obj(
    "Label",
    required=("pairs",),
    pairs=STR_MAP,
    includeSelectors=BOOL,
    includeTemplates=BOOL,
    fields=ListOf(ANY),
)

_FIELDS = {
    "apiVersion": STR,
    "kind": STR,
    "metadata": obj("ObjectMeta", name=STR, namespace=STR, labels=STR_MAP, annotations=STR_MAP),
    "openapi": STR_MAP,
    "namePrefix": STR,
    "nameSuffix": STR,
    "namespace": STR,
    "commonLabels": STR_MAP,
    "labels": ListOf(LABEL),
    "commonAnnotations": STR_MAP,
    "patchesStrategicMerge": STR_LIST,
    "patchesJson6902": ListOf(PATCH),
    "patches": ListOf(PATCH),
    "images": ListOf(IMAGE),
    "imageTags": ListOf(IMAGE),
    "replacements": ListOf(ANY),
    "replicas": ListOf(obj("Replica", required=("name", "count"), name=STR, count=INT)),
    "vars": ListOf(ANY),
    "sortOptions": ANY,
    "resources": STR_LIST,
    "components": STR_LIST,
    "crds": STR_LIST,
    "bases": STR_LIST,
    "configMapGenerator": ListOf(obj("ConfigMapArgs", **_GENERATOR_FIELDS)),
    "secretGenerator": ListOf(obj("SecretArgs", **_GENERATOR_FIELDS, type=STR)),
    "helmGlobals": ANY,
    "helmCharts": ListOf(ANY),
    "helmChartInflationGenerator": ListOf(ANY),
    "generatorOptions": GENERATOR_OPTIONS,
    "configurations": STR_LIST,
    "generators": STR_LIST,
    "transformers": STR_LIST,
    "validators": STR_LIST,
    "buildMetadata": ListOf(
        Enum(("managedByLabel", "originAnnotations", "transformerAnnotations"))
    ),
}

# apiVersion and kind are checked, like every kind's, by manifests.validate.
KUSTOMIZATION = obj("Kustomization", **_FIELDS)
COMPONENT = obj("Component", **_FIELDS)
