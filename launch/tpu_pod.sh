#!/usr/bin/env bash
# Create a TPU VM pod slice, install gram_jax on every worker, and run one stage on all of them.
#
#   PROJECT=my-proj ZONE=us-central2-b TPU_NAME=gram ACCELERATOR=v4-32 \
#     launch/tpu_pod.sh create
#   TPU_NAME=gram launch/tpu_pod.sh setup            # copy this checkout, pip install
#   TPU_NAME=gram launch/tpu_pod.sh run --config=configs/pretrain.py:qwen3-8b \
#     --config.model.path=gs://my-bucket/models/Qwen3-8B \
#     --config.workdir=gs://my-bucket/runs/pretrain
#
# Keep models, data and the workdir in a bucket: a worker's disk goes with the VM. All hosts
# write their checkpoint shards into the one gs:// step directory (launch/README.md).
# jax.distributed.initialize() finds the other workers by itself on a TPU VM, so the same
# command runs everywhere; only process 0 writes logs and metrics.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}"
ZONE="${ZONE:-us-central2-b}"
PROJECT_FLAG=${PROJECT:+--project=$PROJECT}
ACCELERATOR="${ACCELERATOR:-v4-32}"
RUNTIME="${RUNTIME:-tpu-ubuntu2204-base}"
REMOTE_DIR="${REMOTE_DIR:-gram_jax}"
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG --worker=all \
    --command="$1"
}
case "${1:-}" in
  create)
    gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG \
      --accelerator-type="$ACCELERATOR" --version="$RUNTIME"
    ;;
  setup)
    tar czf /tmp/gram_jax_src.tgz --exclude=.git --exclude=workdir -C "$(dirname "$0")/.." .
    gcloud compute tpus tpu-vm scp /tmp/gram_jax_src.tgz "$TPU_NAME":/tmp/ --zone="$ZONE" \
      $PROJECT_FLAG --worker=all
    ssh_all "mkdir -p $REMOTE_DIR && tar xzf /tmp/gram_jax_src.tgz -C $REMOTE_DIR && \
      cd $REMOTE_DIR && pip install -U 'jax[tpu]' && pip install -e ."
    ;;
  run)
    shift
    ssh_all "cd $REMOTE_DIR && python3 -m gram_jax.main --config.distributed.mode=on $*"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" $PROJECT_FLAG --quiet
    ;;
  *)
    echo "usage: $0 create|setup|run <gram_jax.main flags>|delete" >&2
    exit 2
    ;;
esac
