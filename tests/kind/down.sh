#!/usr/bin/env bash
# Delete the cluster up.sh made (everything installed in it goes with it).
set -euo pipefail
kind delete cluster --name "${CLUSTER:-kubeflow-cases}"
