#!/usr/bin/env bash
# Start a Dask scheduler and N workers on 127.0.0.1 with a scheduler file, to try the cluster
# path (`coron3-dask run --scheduler-file`) on one machine.  Ctrl-C (or SIGTERM) stops them all.
#
#   deploy/local-cluster.sh [N_WORKERS] [SCHEDULER_FILE]
#   # in another shell:
#   coron3-dask run asn.json --output-dir "$PWD/products" --scheduler-file SCHEDULER_FILE
#
# Defaults: 2 workers, scheduler file $TMPDIR/coron3-scheduler.json.
# Environment: COR3_SCHEDULER_PORT (default 8786; 0 = any free port), COR3_DASHBOARD_PORT
# (default 8787; 0 = any), COR3_THREADS_PER_WORKER (default 1), COR3_MEMORY_LIMIT (per worker,
# default auto), DASK (the dask command; default: .venv/bin/dask of this checkout if present).
set -euo pipefail

n_workers=${1:-2}
scheduler_file=${2:-${TMPDIR:-/tmp}/coron3-scheduler.json}
port=${COR3_SCHEDULER_PORT:-8786}
dashboard_port=${COR3_DASHBOARD_PORT:-8787}
threads=${COR3_THREADS_PER_WORKER:-1}
memory=${COR3_MEMORY_LIMIT:-auto}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${DASK:-} ]]; then
    if [[ -x $repo/.venv/bin/dask ]]; then DASK=$repo/.venv/bin/dask; else DASK=dask; fi
fi
if ! [[ $n_workers =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [N_WORKERS] [SCHEDULER_FILE]   (N_WORKERS: a positive integer)" >&2
    exit 2
fi

# one BLAS thread per Dask thread; a worker's spill directory that goes away with the cluster
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
workdir=$(mktemp -d "${TMPDIR:-/tmp}/coron3-local-cluster.XXXXXX")
pids=()

cleanup() {
    trap - EXIT INT TERM
    if ((${#pids[@]})); then
        echo "local-cluster: stopping the workers and the scheduler" >&2
        kill -TERM "${pids[@]:1}" 2>/dev/null || true  # workers first: no reconnection noise
        wait "${pids[@]:1}" 2>/dev/null || true
        kill -TERM "${pids[0]}" 2>/dev/null || true
        wait "${pids[0]}" 2>/dev/null || true
    fi
    rm -rf "$workdir"
    rm -f "$scheduler_file"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -f "$scheduler_file"
mkdir -p "$(dirname "$scheduler_file")"
"$DASK" scheduler --host 127.0.0.1 --port "$port" --dashboard-address "127.0.0.1:$dashboard_port" \
    --scheduler-file "$scheduler_file" >"$workdir/scheduler.log" 2>&1 &
pids+=("$!")

for _ in $(seq 1 300); do  # the scheduler writes its file once it listens (up to 30 s)
    [[ -s $scheduler_file ]] && break
    if ! kill -0 "${pids[0]}" 2>/dev/null; then
        echo "local-cluster: the scheduler exited:" >&2
        cat "$workdir/scheduler.log" >&2
        exit 1
    fi
    sleep 0.1
done
if ! [[ -s $scheduler_file ]]; then
    echo "local-cluster: no scheduler file after 30 s" >&2
    exit 1
fi

for i in $(seq 1 "$n_workers"); do
    "$DASK" worker --scheduler-file "$scheduler_file" --host 127.0.0.1 --name "local-$i" \
        --nthreads "$threads" --memory-limit "$memory" --local-directory "$workdir/worker-$i" \
        >"$workdir/worker-$i.log" 2>&1 &
    pids+=("$!")
done

address=$(sed -n 's/.*"address": *"\([^"]*\)".*/\1/p' "$scheduler_file")
dashboard=$(sed -n 's/.*"dashboard": *\([0-9][0-9]*\).*/\1/p' "$scheduler_file")
cat <<EOF
Dask scheduler ${address:-(see $scheduler_file)} with $n_workers workers x $threads threads on 127.0.0.1
  scheduler file: $scheduler_file
  dashboard:      http://127.0.0.1:${dashboard:-$dashboard_port}/status
  logs:           $workdir/
Run:  coron3-dask run ASN.json --output-dir "\$PWD/products" --scheduler-file $scheduler_file
      (absolute paths: the workers write the products, from their own working directory)
Ctrl-C stops the cluster.
EOF

# until Ctrl-C, or until the scheduler exits
wait "${pids[0]}"
