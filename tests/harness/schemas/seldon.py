"""SeldonDeployment machinelearning.seldon.io/v1, as seldon-core 1.17.1 defines it.

Follows operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go of seldon-core 1.17
(the last Apache-2.0 line). Pod specs and containers reuse the kubernetes client models.
"""

from __future__ import annotations

from tests.harness.schemas import (
    ANY,
    BOOL,
    INT,
    INT_OR_STR,
    STR,
    STR_MAP,
    Enum,
    ListOf,
    Obj,
    Ref,
    obj,
)

PARAMETER = obj(
    "Parameter",
    required=("name", "value", "type"),
    name=STR,
    value=STR,
    type=Enum(("INT", "FLOAT", "DOUBLE", "STRING", "BOOL")),
)

ENDPOINT = obj(
    "Endpoint",
    service_host=STR,
    service_port=INT,
    type=Enum(("REST", "GRPC")),
    httpPort=INT,
    grpcPort=INT,
)

LOGGER = obj("Logger", url=STR, mode=Enum(("all", "request", "response")))


def _predictive_unit_fields() -> dict:
    # `implementation` stays a free string: besides the Go constants it names the
    # prepackaged servers (SKLEARN_SERVER, XGBOOST_SERVER, MLFLOW_SERVER, ...).
    return {
        "name": STR,
        "children": ListOf(PREDICTIVE_UNIT),
        "type": Enum(
            ("UNKNOWN_TYPE", "ROUTER", "COMBINER", "MODEL", "TRANSFORMER", "OUTPUT_TRANSFORMER")
        ),
        "implementation": STR,
        "methods": ListOf(
            Enum(("TRANSFORM_INPUT", "TRANSFORM_OUTPUT", "ROUTE", "AGGREGATE", "SEND_FEEDBACK"))
        ),
        "endpoint": ENDPOINT,
        "parameters": ListOf(PARAMETER),
        "modelUri": STR,
        "serviceAccountName": STR,
        "envSecretRefName": STR,
        "storageInitializerImage": STR,
        "logger": LOGGER,
    }


PREDICTIVE_UNIT = Obj("PredictiveUnit", _predictive_unit_fields, frozenset({"name"}))

# seldon-core copies ObjectMeta (without managedFields, with clusterName) for componentSpecs.
COMPONENT_METADATA = obj(
    "SeldonObjectMeta",
    name=STR,
    generateName=STR,
    namespace=STR,
    labels=STR_MAP,
    annotations=STR_MAP,
    finalizers=ListOf(STR),
    clusterName=STR,
)

HPA_SPEC = obj(
    "SeldonHpaSpec",
    required=("maxReplicas",),
    minReplicas=INT,
    maxReplicas=INT,
    # autoscaling/v2beta1 MetricSpec: the kubernetes client here no longer ships it.
    metrics=ListOf(ANY),
)

KEDA_SPEC = obj(
    "SeldonScaledObjectSpec",
    required=("triggers",),
    pollingInterval=INT,
    cooldownPeriod=INT,
    minReplicaCount=INT,
    maxReplicaCount=INT,
    advanced=ANY,
    triggers=ListOf(ANY),
)

PDB_SPEC = obj("SeldonPdbSpec", minAvailable=INT_OR_STR, maxUnavailable=INT_OR_STR)

COMPONENT_SPEC = obj(
    "SeldonPodSpec",
    metadata=COMPONENT_METADATA,
    spec=Ref("V1PodSpec"),
    hpaSpec=HPA_SPEC,
    replicas=INT,
    kedaSpec=KEDA_SPEC,
    pdbSpec=PDB_SPEC,
)

EXPLAINER = obj(
    "Explainer",
    type=Enum(
        (
            "AnchorTabular",
            "AnchorImages",
            "AnchorText",
            "Counterfactuals",
            "Contrastive",
            "KernelShap",
            "IntegratedGradients",
            "ALE",
            "TreeShap",
        )
    ),
    modelUri=STR,
    serviceAccountName=STR,
    containerSpec=Ref("V1Container"),
    config=STR_MAP,
    endpoint=ENDPOINT,
    envSecretRefName=STR,
    storageInitializerImage=STR,
    replicas=INT,
    initParameters=STR,
)

SVC_ORCH_SPEC = obj(
    "SvcOrchSpec",
    resources=Ref("V1ResourceRequirements"),
    env=ListOf(Ref("V1EnvVar")),
    replicas=INT,
)

PREDICTOR = obj(
    "PredictorSpec",
    required=("name", "graph"),
    name=STR,
    graph=PREDICTIVE_UNIT,
    componentSpecs=ListOf(COMPONENT_SPEC),
    replicas=INT,
    annotations=STR_MAP,
    engineResources=Ref("V1ResourceRequirements"),
    labels=STR_MAP,
    svcOrchSpec=SVC_ORCH_SPEC,
    traffic=INT,
    explainer=EXPLAINER,
    shadow=BOOL,
    ssl=obj("SSL", certSecretName=STR),
)

SPEC = obj(
    "SeldonDeploymentSpec",
    required=("predictors",),
    name=STR,
    predictors=ListOf(PREDICTOR),
    oauth_key=STR,
    oauth_secret=STR,
    annotations=STR_MAP,
    protocol=Enum(("seldon", "tensorflow", "kfserving", "v2")),
    transport=Enum(("rest", "grpc")),
    replicas=INT,
    serverType=Enum(("rpc", "kafka")),
)

SELDON_DEPLOYMENT = obj(
    "SeldonDeployment",
    apiVersion=STR,
    kind=STR,
    metadata=Ref("V1ObjectMeta"),
    spec=SPEC,
    status=ANY,
)
