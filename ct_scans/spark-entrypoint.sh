#!/usr/bin/env bash
# The image's entry point. The Spark operator starts the driver and executor pods of
# manifests/sparkapplication.yaml with no command, only the arguments `driver ...` or `executor`,
# and the environment Spark's Kubernetes backend sets; this script turns those into the two
# processes, as the official Spark images' entry point does, with the pip-installed PySpark as
# SPARK_HOME. Anything else (every other manifest names its own command) runs as given.
set -euo pipefail

spark_home() {
  SPARK_HOME="${SPARK_HOME:-$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}"
  export SPARK_HOME
}

case "${1:-}" in
  driver)
    shift
    spark_home
    exec "$SPARK_HOME/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client \
      "$@"
    ;;
  executor)
    shift
    spark_home
    # Spark passes the executor's JVM options as SPARK_JAVA_OPT_0, _1, ... in order.
    mapfile -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | cut -d= -f2- || true)
    exec java "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
      -cp "$SPARK_HOME/conf:$SPARK_HOME/jars/*" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" \
      --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" \
      --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec "$@"
    ;;
esac
