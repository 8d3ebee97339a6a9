#!/usr/bin/env bash
# Common launch line of segfpn's Slurm jobs: one task per device, Lightning reads the Slurm environment
# (rank, world size, master address) itself. The run folder is <trainer.default_root_dir>/slurm-<job id> (array jobs:
# slurm-<array id>_<task id>), so a requeued job finds its own run and resumes from its newest readable checkpoint
# (`--ckpt_path last`: hpc_ckpt_*.ckpt written on SIGUSR1, checkpoints/last.ckpt, stop-step*.ckpt...).
#   srun_segfpn.sh CONFIG [extra segfpn fit arguments...]
set -euo pipefail
config=${1:?usage: srun_segfpn.sh CONFIG [segfpn fit args...]}
shift
segfpn=${SEGFPN:-segfpn}
echo "[segfpn] job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-?}: ${SLURM_NNODES:-1} node(s) x ${SLURM_NTASKS_PER_NODE:-1} task(s)"
exec srun --kill-on-bad-exit=1 "$segfpn" fit --config "$config" \
  --trainer.num_nodes="${SLURM_NNODES:-1}" \
  --trainer.devices="${SLURM_NTASKS_PER_NODE:-1}" \
  --trainer.strategy=ddp \
  --ckpt_path=last \
  "$@"
