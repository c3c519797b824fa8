"""SparkApplication sparkoperator.k8s.io/v1beta2, as the Kubeflow Spark operator defines it.

Follows api/v1beta2/sparkapplication_types.go of kubeflow/spark-operator 2.x (the version with
`driver.template`, `sparkUIOptions` and `dynamicAllocation`). Kubernetes pieces (volumes, env,
security contexts, affinity) reuse the kubernetes client models.
"""

from __future__ import annotations

from tests.harness.schemas import (
    ANY,
    BOOL,
    INT,
    QUANTITY,
    STR,
    STR_LIST,
    STR_MAP,
    Enum,
    ListOf,
    MapOf,
    Ref,
    obj,
)

NAME_PATH = obj("NamePath", required=("name", "path"), name=STR, path=STR)
SECRET_INFO = obj(
    "SecretInfo",
    required=("name", "path", "secretType"),
    name=STR,
    path=STR,
    secretType=Enum(("GCPServiceAccount", "HadoopDelegationToken", "Generic")),
)
NAME_KEY = obj("NameKey", required=("name", "key"), name=STR, key=STR)
PORT = obj(
    "Port",
    required=("name", "protocol", "containerPort"),
    name=STR,
    protocol=STR,
    containerPort=INT,
)
GPU = obj("GPUSpec", required=("name", "quantity"), name=STR, quantity=INT)

# SparkPodSpec: what the driver and the executor share.
_POD_FIELDS = {
    "template": Ref("V1PodTemplateSpec"),
    "cores": INT,
    "coreLimit": STR,
    "memory": STR,
    "memoryOverhead": STR,
    "gpu": GPU,
    "image": STR,
    "configMaps": ListOf(NAME_PATH),
    "secrets": ListOf(SECRET_INFO),
    "env": ListOf(Ref("V1EnvVar")),
    "envVars": STR_MAP,
    "envFrom": ListOf(Ref("V1EnvFromSource")),
    "envSecretKeyRefs": MapOf(NAME_KEY),
    "labels": STR_MAP,
    "annotations": STR_MAP,
    "volumeMounts": ListOf(Ref("V1VolumeMount")),
    "affinity": Ref("V1Affinity"),
    "tolerations": ListOf(Ref("V1Toleration")),
    "podSecurityContext": Ref("V1PodSecurityContext"),
    "securityContext": Ref("V1SecurityContext"),
    "schedulerName": STR,
    "sidecars": ListOf(Ref("V1Container")),
    "initContainers": ListOf(Ref("V1Container")),
    "hostNetwork": BOOL,
    "nodeSelector": STR_MAP,
    "dnsConfig": Ref("V1PodDNSConfig"),
    "terminationGracePeriodSeconds": INT,
    "serviceAccount": STR,
    "hostAliases": ListOf(Ref("V1HostAlias")),
    "shareProcessNamespace": BOOL,
    "runtimeClassName": STR,
}

DRIVER = obj(
    "DriverSpec",
    **_POD_FIELDS,
    podName=STR,
    coreRequest=STR,
    javaOptions=STR,
    lifecycle=Ref("V1Lifecycle"),
    kubernetesMaster=STR,
    serviceAnnotations=STR_MAP,
    serviceLabels=STR_MAP,
    ports=ListOf(PORT),
    priorityClassName=STR,
)

EXECUTOR = obj(
    "ExecutorSpec",
    **_POD_FIELDS,
    instances=INT,
    coreRequest=STR,
    javaOptions=STR,
    lifecycle=Ref("V1Lifecycle"),
    deleteOnTermination=BOOL,
    ports=ListOf(PORT),
    priorityClassName=STR,
)

RESTART_POLICY = obj(
    "RestartPolicy",
    type=Enum(("Never", "OnFailure", "Always")),
    onSubmissionFailureRetries=INT,
    onFailureRetries=INT,
    onSubmissionFailureRetryInterval=INT,
    onFailureRetryInterval=INT,
)

DEPS = obj(
    "Dependencies",
    jars=STR_LIST,
    files=STR_LIST,
    pyFiles=STR_LIST,
    packages=STR_LIST,
    excludePackages=STR_LIST,
    repositories=STR_LIST,
    archives=STR_LIST,
)

MONITORING = obj(
    "MonitoringSpec",
    required=("exposeDriverMetrics", "exposeExecutorMetrics"),
    exposeDriverMetrics=BOOL,
    exposeExecutorMetrics=BOOL,
    metricsProperties=STR,
    metricsPropertiesFile=STR,
    prometheus=obj(
        "PrometheusSpec",
        required=("jmxExporterJar",),
        jmxExporterJar=STR,
        port=INT,
        portName=STR,
        configFile=STR,
        configuration=STR,
    ),
)

_SERVICE_FIELDS = {
    "servicePort": INT,
    "servicePortName": STR,
    "serviceType": Enum(("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")),
    "serviceAnnotations": STR_MAP,
    "serviceLabels": STR_MAP,
    "ingressAnnotations": STR_MAP,
    "ingressTLS": ListOf(Ref("V1IngressTLS")),
}

SPEC = obj(
    "SparkApplicationSpec",
    required=("type", "sparkVersion", "mainApplicationFile", "driver", "executor"),
    type=Enum(("Java", "Python", "Scala", "R")),
    sparkVersion=STR,
    mode=Enum(("cluster", "client", "in-cluster-client")),
    proxyUser=STR,
    image=STR,
    imagePullPolicy=Enum(("Always", "Never", "IfNotPresent")),
    imagePullSecrets=STR_LIST,
    mainClass=STR,
    mainApplicationFile=STR,
    arguments=STR_LIST,
    sparkConf=STR_MAP,
    hadoopConf=STR_MAP,
    sparkConfigMap=STR,
    hadoopConfigMap=STR,
    volumes=ListOf(Ref("V1Volume")),
    driver=DRIVER,
    executor=EXECUTOR,
    deps=DEPS,
    restartPolicy=RESTART_POLICY,
    nodeSelector=STR_MAP,
    failureRetries=INT,
    retryInterval=INT,
    pythonVersion=Enum(("2", "3")),
    memoryOverheadFactor=STR,
    monitoring=MONITORING,
    batchScheduler=STR,
    timeToLiveSeconds=INT,
    batchSchedulerOptions=obj(
        "BatchSchedulerConfiguration",
        queue=STR,
        priorityClassName=STR,
        resources=MapOf(QUANTITY),
    ),
    sparkUIOptions=obj("SparkUIConfiguration", **_SERVICE_FIELDS),
    driverIngressOptions=ListOf(
        obj(
            "DriverIngressConfiguration",
            required=("servicePort", "servicePortName"),
            **_SERVICE_FIELDS,
            ingressURLFormat=STR,
        )
    ),
    dynamicAllocation=obj(
        "DynamicAllocation",
        enabled=BOOL,
        initialExecutors=INT,
        minExecutors=INT,
        maxExecutors=INT,
        shuffleTrackingTimeout=INT,
    ),
)

SPARK_APPLICATION = obj(
    "SparkApplication",
    apiVersion=STR,
    kind=STR,
    metadata=Ref("V1ObjectMeta"),
    spec=SPEC,
    status=ANY,
)
