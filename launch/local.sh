#!/usr/bin/env bash
# One process on this machine. FAKE_DEVICES=N splits the CPU into N devices so the sharded
# code paths run as they would on N accelerators (GPUs are used as-is when present).
#   launch/local.sh --config configs/simclr_mnist.py --workdir runs/x
#   FAKE_DEVICES=8 launch/local.sh --workdir runs/x8
set -euo pipefail
if [[ -n "${FAKE_DEVICES:-}" ]]; then
  export XLA_FLAGS="--xla_force_host_platform_device_count=${FAKE_DEVICES} ${XLA_FLAGS:-}"
fi
exec jssl train "$@"
