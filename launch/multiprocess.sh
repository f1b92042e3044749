#!/usr/bin/env bash
# NUM_PROCESSES jax processes on this machine, joined by jax.distributed: the multi-host code
# paths (per-process data shards, global arrays from process-local batches, one writer) without
# a cluster. Each process gets DEVICES_PER_PROCESS fake CPU devices.
#   NUM_PROCESSES=2 launch/multiprocess.sh --config configs/simclr_mnist.py:smoke --workdir runs/mp
set -euo pipefail
NUM_PROCESSES="${NUM_PROCESSES:-2}"
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-1}"
PORT="${PORT:-$((20000 + RANDOM % 20000))}"
export JAX_COORDINATOR_ADDRESS="localhost:${PORT}" JAX_NUM_PROCESSES="${NUM_PROCESSES}"
export XLA_FLAGS="--xla_force_host_platform_device_count=${DEVICES_PER_PROCESS} ${XLA_FLAGS:-}"
pids=()
for ((i = 0; i < NUM_PROCESSES; i++)); do
  JAX_PROCESS_ID="$i" python -m jssl.cli train "$@" > >(sed "s/^/[process $i] /") 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
