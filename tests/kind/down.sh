#!/usr/bin/env bash
# Delete the cluster up.sh made.
set -euo pipefail
kind delete cluster --name "${CLUSTER:-kubeflow-cases}"
