#!/usr/bin/env bash
# Start one piece of a dask.distributed cluster for `ccpipe batch --runner DaskRunner` (see README.md):
#   deploy/dask/launch.sh scheduler            # on the scheduler machine: listens on $DASK_SCHEDULER_PORT
#   deploy/dask/launch.sh worker HOST:PORT     # on every worker machine (run it once per machine)
# Workers need the same ccpipe (and spaCy model) installed, the same input/output/keystore paths, and
# the master key ($CCPIPE_MASTER_KEY or --master_key_file's path) or the key manager's token file.
set -euo pipefail
ROLE="${1:?usage: launch.sh scheduler | worker SCHEDULER_HOST:PORT}"
DASK="${DASK:-dask}"                               # the dask CLI of the virtualenv that has ccpipe installed
HOST="${DASK_HOST:-$(hostname -I | awk '{print $1}')}"  # the address other machines reach this one at
case "$ROLE" in
  scheduler)
    exec "$DASK" scheduler --host "$HOST" --port "${DASK_SCHEDULER_PORT:-8786}" \
      --dashboard-address "${DASK_DASHBOARD:-:8787}"
    ;;
  worker)
    SCHEDULER="${2:?usage: launch.sh worker SCHEDULER_HOST:PORT}"
    # One process per core, one thread each: the PII stage is CPU-bound Python (the GIL), and each
    # process loads the spaCy model once. The nanny restarts a worker that dies.
    # glibc returns large freed blocks (Argon2id's 19 MiB, Beam's data chunks) to the system: a flat
    # worker RSS (pipelines.batch.WORKER_MALLOC_ENV, measured in bench.scale).
    export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-1048576}" MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
    exec "$DASK" worker "tcp://$SCHEDULER" --host "$HOST" \
      --nworkers "${DASK_NWORKERS:-$(nproc)}" --nthreads 1 \
      --memory-limit "${DASK_MEMORY_LIMIT:-auto}" --local-directory "${DASK_LOCAL_DIR:-/tmp/dask-ccpipe}"
    ;;
  *)
    echo "unknown role $ROLE: use scheduler or worker" >&2
    exit 2
    ;;
esac
