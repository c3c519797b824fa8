#!/usr/bin/env bash
# Start a kind cluster with the Kubeflow pieces the case studies use, at the versions pinned in
# versions.env, then build every case image and load it into the cluster. Needs docker, kind,
# kubectl and helm. Every install waits until its controllers are ready and stops the script with
# a message naming what did not come up.
#
#   bash tests/kind/up.sh                         # cert-manager, Trainer v2 (+ JobSet), Katib,
#                                                 # KServe (Standard mode), Pipelines, Spark operator
#   LEGACY_V1=1 bash tests/kind/up.sh             # also the Training Operator v1 (legacy-v1/ Components)
#   SELDON=1 bash tests/kind/up.sh                # also Seldon Core 1.17.1 (seldon/ Components)
#   COMPONENTS="certmanager trainer" bash tests/kind/up.sh   # only these
#   WAIT=900s bash tests/kind/up.sh               # longer waits on a slow machine
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$here/versions.env"

COMPONENTS="${COMPONENTS:-certmanager trainer katib kserve pipelines spark}"
if [[ "${LEGACY_V1:-0}" == 1 ]]; then COMPONENTS+=" training-operator"; fi
if [[ "${SELDON:-0}" == 1 ]]; then COMPONENTS+=" seldon"; fi
CLUSTER="${CLUSTER:-kubeflow-cases}"
# The namespace every case's kustomization.yaml names (a Kubeflow profile's, on a real cluster).
NAMESPACE="${NAMESPACE:-kubeflow-user-example-com}"
WAIT="${WAIT:-600s}"

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "up.sh needs $tool on PATH" >&2; exit 1; }
done
if ! kind version | grep -q "kind $KIND_VERSION "; then
  echo "up.sh: warning: this is $(kind version), versions.env pins kind $KIND_VERSION" >&2
fi

want() { [[ " $COMPONENTS " == *" $1 "* ]]; }

fail() {  # what did not come up, then where to look
  local what="$1" namespace="$2"
  echo "up.sh: $what did not come up within $WAIT" >&2
  kubectl get pods -n "$namespace" -o wide >&2 || true
  kubectl get events -n "$namespace" --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
  exit 1
}

ready() {  # ready NAMESPACE DEPLOYMENT... : wait until each Deployment is Available
  local namespace="$1" deployment
  shift
  for deployment in "$@"; do
    kubectl wait --for=condition=Available --timeout="$WAIT" -n "$namespace" "deployment/$deployment" \
      || fail "deployment $deployment in namespace $namespace" "$namespace"
  done
}

established() {  # established CRD... : wait until each CustomResourceDefinition is served
  local crd
  for crd in "$@"; do
    kubectl wait --for=condition=Established --timeout=120s "crd/$crd" \
      || fail "CRD $crd" default
  done
}

chart() {  # chart WHAT NAMESPACE helm-upgrade-arguments... : helm upgrade --install, waited
  local what="$1" namespace="$2"
  shift 2
  helm upgrade --install "$@" --namespace "$namespace" --create-namespace --wait --timeout "$WAIT" \
    || fail "$what (helm $1)" "$namespace"
}

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" --config "$here/kind-config.yaml"
fi
kubectl config use-context "kind-$CLUSTER"

# The cases' namespace, labelled so Katib injects its metrics collector into trial pods there.
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" katib.kubeflow.org/metrics-collector-injection=enabled --overwrite

if want certmanager; then  # KServe's webhook certificates
  kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
  ready cert-manager cert-manager cert-manager-cainjector cert-manager-webhook
fi

if want trainer; then  # TrainJob, TrainingRuntime, ClusterTrainingRuntime (trainer.kubeflow.org/v1alpha1)
  kubectl apply --server-side -k "github.com/kubeflow/trainer.git/manifests/overlays/manager?ref=${TRAINER_VERSION}"
  ready kubeflow-system jobset-controller-manager kubeflow-trainer-controller-manager
  established jobsets.jobset.x-k8s.io trainjobs.trainer.kubeflow.org \
    trainingruntimes.trainer.kubeflow.org clustertrainingruntimes.trainer.kubeflow.org
  # torch-distributed, xgboost-distributed and the other stock ClusterTrainingRuntimes.
  kubectl apply --server-side -k "github.com/kubeflow/trainer.git/manifests/overlays/runtimes?ref=${TRAINER_VERSION}"
  for runtime in torch-distributed xgboost-distributed; do
    kubectl get clustertrainingruntime "$runtime" >/dev/null || fail "ClusterTrainingRuntime $runtime" kubeflow-system
  done
fi

if want training-operator; then  # legacy: TFJob, PyTorchJob, XGBoostJob (kubeflow.org/v1)
  kubectl apply --server-side -k "github.com/kubeflow/trainer.git/manifests/overlays/standalone?ref=${TRAINING_OPERATOR_VERSION}"
  ready kubeflow training-operator
  established tfjobs.kubeflow.org pytorchjobs.kubeflow.org xgboostjobs.kubeflow.org
fi

if want katib; then  # after Trainer, so the controller finds the TrainJob kind it runs trials as
  kubectl apply -k "github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=${KATIB_VERSION}"
  ready kubeflow katib-mysql katib-db-manager katib-controller katib-ui
  established experiments.kubeflow.org trials.kubeflow.org suggestions.kubeflow.org
fi

if want kserve; then  # Standard mode (plain Deployments): no Knative or Istio on a laptop
  want certmanager || kubectl get crd certificates.cert-manager.io >/dev/null \
    || fail "cert-manager (KServe needs it; add certmanager to COMPONENTS)" cert-manager
  chart "KServe CRDs" kserve kserve-crd oci://ghcr.io/kserve/charts/kserve-crd --version "$KSERVE_VERSION"
  chart "KServe" kserve kserve-resources oci://ghcr.io/kserve/charts/kserve-resources \
    --version "$KSERVE_VERSION" --set kserve.version="$KSERVE_VERSION" \
    --set kserve.controller.deploymentMode=Standard
  ready kserve kserve-controller-manager
  established inferenceservices.serving.kserve.io
fi

if want pipelines; then  # single-user Pipelines; artifacts in SeaweedFS (Service seaweedfs.kubeflow)
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=${PIPELINE_VERSION}"
  established applications.app.k8s.io
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=${PIPELINE_VERSION}"
  # Every Pipelines Deployment carries this label (env/platform-agnostic/kustomization.yaml).
  kubectl wait --for=condition=Available --timeout="$WAIT" -n kubeflow deployment \
    -l application-crd-id=kubeflow-pipelines || fail "Kubeflow Pipelines deployments" kubeflow
  ready kubeflow ml-pipeline seaweedfs
fi

if want spark; then  # SparkApplication (sparkoperator.k8s.io/v1beta2), run in the cases' namespace
  helm repo add --force-update spark-operator https://kubeflow.github.io/spark-operator >/dev/null
  chart "Spark operator" spark-operator spark-operator spark-operator/spark-operator \
    --version "$SPARK_OPERATOR_VERSION" --set "spark.jobNamespaces={$NAMESPACE}"
  established sparkapplications.sparkoperator.k8s.io
fi

if want seldon; then  # opt-in: SeldonDeployment (machinelearning.seldon.io/v1)
  chart "Seldon Core" seldon-system seldon-core seldon-core-operator \
    --repo https://storage.googleapis.com/seldon-charts --version "$SELDON_CORE_VERSION" \
    --set usageMetrics.enabled=false
  established seldondeployments.machinelearning.seldon.io
fi

CLUSTER="$CLUSTER" bash "$here/build-load.sh"
echo "cluster $CLUSTER is ready ($COMPONENTS): make kind-test runs the cluster lane"
