#!/usr/bin/env bash
# NUM_PROCESSES jax processes on this machine, joined by jax.distributed: the multi-host code
# paths (per-process data shards, global arrays from process-local batches, one writer) without
# a cluster. Each process gets DEVICES_PER_PROCESS fake CPU devices.
#   NUM_PROCESSES=2 launch/multiprocess.sh --config configs/simclr_mnist.py:smoke --workdir runs/mp
# SIGTERM or Ctrl-C here reaches every process as SIGTERM (jssl saves a checkpoint and exits 143;
# rerunning the same command resumes). The exit status is the last nonzero one of the processes.
set -euo pipefail
NUM_PROCESSES="${NUM_PROCESSES:-2}"
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-1}"
PORT="${PORT:-$((20000 + RANDOM % 20000))}"
export JAX_COORDINATOR_ADDRESS="localhost:${PORT}" JAX_NUM_PROCESSES="${NUM_PROCESSES}"
export XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS} ${XLA_FLAGS:-}"
pids=()
# Background processes of a script ignore SIGINT, so Ctrl-C is passed on as SIGTERM, which jssl
# handles the same way and which nothing here ignores.
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM INT
for ((i = 0; i < NUM_PROCESSES; i++)); do
  JAX_PROCESS_ID="$i" python -m jssl.cli train "$@" > >(sed "s/^/[process $i] /") 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  # A trapped signal ends `wait` early; wait until the process is gone, then read its status
  # (bash keeps the exit status of reaped background processes).
  while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done
  wait "$pid" || status=$?
done
exit "$status"
