#!/usr/bin/env bash
# Start a kind cluster with the Kubeflow pieces the case studies use, at pinned versions, then
# build every case image and load it into the cluster. Needs docker, kind, kubectl and helm.
# Components can be left out: COMPONENTS="training katib" bash tests/kind/up.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=/dev/null
source "$here/versions.env"
COMPONENTS="${COMPONENTS:-certmanager training trainer katib kserve pipelines spark seldon}"
CLUSTER="${CLUSTER:-kubeflow-cases}"

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "up.sh needs $tool on PATH" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config "$here/kind-config.yaml"
fi
kubectl config use-context "kind-$CLUSTER"

want() { [[ " $COMPONENTS " == *" $1 "* ]]; }

if want certmanager; then
  kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
  kubectl wait --for=condition=Available --timeout=300s -n cert-manager deployment --all
fi
if want training; then  # TFJob, PyTorchJob, XGBoostJob (kubeflow.org/v1)
  kubectl apply --server-side -k "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=${TRAINING_OPERATOR_VERSION}"
  kubectl wait --for=condition=Available --timeout=300s -n kubeflow deployment/training-operator
fi
if want trainer; then   # TrainJob (trainer.kubeflow.org/v1alpha1) with the default runtimes
  helm upgrade --install kubeflow-trainer oci://ghcr.io/kubeflow/charts/kubeflow-trainer \
    --namespace kubeflow-system --create-namespace --version "$TRAINER_VERSION" \
    --set runtimes.defaultEnabled=true --wait
fi
if want katib; then
  kubectl apply -k "github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=${KATIB_VERSION}"
  kubectl wait --for=condition=Available --timeout=600s -n kubeflow deployment/katib-controller
fi
if want kserve; then    # Standard (raw Deployment) mode: no Knative or Istio on a laptop
  helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd \
    --version "$KSERVE_VERSION" --namespace kserve --create-namespace --wait
  helm upgrade --install kserve oci://ghcr.io/kserve/charts/kserve \
    --version "$KSERVE_VERSION" --namespace kserve \
    --set kserve.controller.deploymentMode=RawDeployment --wait
fi
if want pipelines; then
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=${PIPELINE_VERSION}"
  kubectl wait --for condition=established --timeout=60s crd/applications.app.k8s.io
  kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=${PIPELINE_VERSION}"
  kubectl wait --for=condition=Available --timeout=900s -n kubeflow deployment/ml-pipeline
fi
if want spark; then
  helm repo add spark-operator https://kubeflow.github.io/spark-operator >/dev/null
  helm upgrade --install spark-operator spark-operator/spark-operator \
    --version "$SPARK_OPERATOR_VERSION" --namespace spark-operator --create-namespace --wait
fi
if want seldon; then
  helm repo add seldonio https://storage.googleapis.com/seldon-charts >/dev/null
  helm upgrade --install seldon-core seldonio/seldon-core-operator \
    --version "$SELDON_CORE_VERSION" --namespace seldon-system --create-namespace --wait
fi

bash "$here/build-load.sh"
echo "cluster $CLUSTER is ready: make kind-test runs the cluster lane"
