#!/bin/bash
# Multi-node DDP without SLURM: torchrun starts one process per GPU on each node; Lightning reads the torchrun
# (TorchElastic) environment. Run the same command on every node, with NODE_RANK 0..NNODES-1 and the address
# of node 0:
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 scripts/slurm/torchrun.sh           # on node 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 scripts/slurm/torchrun.sh           # on node 1
#
# On a single machine Lightning spawns the ranks itself: amlit fit ... --trainer.devices=4 --trainer.strategy=ddp
set -euo pipefail

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi --list-gpus | wc -l)}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
CONFIG=${AMLIT_CONFIG:-configs/amsoftmax_casia.yaml}

exec torchrun \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$GPUS_PER_NODE" \
    --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" \
    -m amlit fit --config "$CONFIG" \
    --trainer.num_nodes="$NNODES" --trainer.devices="$GPUS_PER_NODE" --trainer.strategy=ddp \
    "$@"
