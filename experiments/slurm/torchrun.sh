#!/usr/bin/env bash
# Clusters without Slurm: start this on every node (same MASTER_ADDR/PORT, NODE_RANK = 0..NNODES-1).
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 GPUS=8 experiments/slurm/torchrun.sh configs/swin_tiny_fpn_ade20k.yaml \
#       --data.data_root=/data/ADEChallengeData2016 --data.batch_size=1
# Lightning detects torchrun's environment (TorchElasticEnvironment). The run folder is
# <trainer.default_root_dir>/torchrun-$RUN_NAME (default RUN_NAME: the config's name): every rank finds it from the
# rendezvous id, and the same command (same RUN_NAME) resumes it. Give each new training its own RUN_NAME.
set -euo pipefail
config=${1:?usage: torchrun.sh CONFIG [segfpn fit args...]}
shift
run_name=${RUN_NAME:-$(basename "$config" .yaml)}
echo "[segfpn] torchrun run name: $run_name (run folder torchrun-$run_name)"
gpus=${GPUS:-$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")}
exec torchrun --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$gpus" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" --rdzv_id="$run_name" \
  -m segfpn fit --config "$config" --trainer.num_nodes="${NNODES:-1}" --trainer.devices="$gpus" \
  --trainer.strategy=ddp --ckpt_path=last "$@"
