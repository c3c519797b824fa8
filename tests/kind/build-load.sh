#!/usr/bin/env bash
# Build each case study's image (context: the case folder) under the name case.toml gives,
# and load it into the kind cluster so no registry is needed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
CLUSTER="${CLUSTER:-kubeflow-cases}"
shopt -s nullglob
built=0
for toml in "$root"/*/case.toml; do
  case_dir="$(dirname "$toml")"
  image="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["image"])' "$toml")"
  echo "building $image from $case_dir"
  docker build -t "$image" "$case_dir"
  kind load docker-image "$image" --name "$CLUSTER"
  built=$((built + 1))
done
echo "$built image(s) built and loaded"
