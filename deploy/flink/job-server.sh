#!/usr/bin/env bash
# Run Beam's Flink job server (from Maven Central) next to a Flink cluster; ccpipe submits to it with
#   ccpipe stream --runner PortableRunner --job_endpoint localhost:8099 --environment_type DOCKER \
#     --environment_config ccpipe:0.1.0 --source kafka://... --output s3://...
set -euo pipefail
BEAM_VERSION="${BEAM_VERSION:-2.77.0}"
FLINK_MASTER="${FLINK_MASTER:-localhost:8081}"
JAR_DIR="${JAR_DIR:-$(dirname "$0")/../../.cache/flink}"
JAR="$JAR_DIR/beam-runners-flink-1.19-job-server-${BEAM_VERSION}.jar"
if [[ ! -f "$JAR" ]]; then
  mkdir -p "$JAR_DIR"
  mvn -q -B dependency:copy -Dartifact="org.apache.beam:beam-runners-flink-1.19-job-server:${BEAM_VERSION}" \
    -DoutputDirectory="$JAR_DIR"
fi
exec java -jar "$JAR" --flink-master="$FLINK_MASTER" --job-port=8099 --artifact-port=8098 --expansion-port=8097
