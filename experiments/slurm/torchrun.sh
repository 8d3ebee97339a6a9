#!/usr/bin/env bash
# Clusters without Slurm: start this on every node (same MASTER_ADDR/PORT, NODE_RANK = 0..NNODES-1).
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 GPUS=8 experiments/slurm/torchrun.sh configs/swin_tiny_fpn_ade20k.yaml \
#       --data.data_root=/data/ADEChallengeData2016 --data.batch_size=1
# Lightning detects torchrun's environment (TorchElasticEnvironment); restart the command to resume.
set -euo pipefail
config=${1:?usage: torchrun.sh CONFIG [segfpn fit args...]}
shift
gpus=${GPUS:-$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")}
exec torchrun --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$gpus" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
  -m segfpn fit --config "$config" --trainer.num_nodes="${NNODES:-1}" --trainer.devices="$gpus" \
  --trainer.strategy=ddp --ckpt_path=last "$@"
