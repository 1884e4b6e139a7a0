#!/bin/bash
# Everything this project measures on a lent GPU, in one call (device time is scarce):
#   bash bench/gpu_suite.sh parity|attention|train|profile|growth|loss|finetune|score8b|
#                           generate8b|load8b
#   (results under $OUT, else /tmp)
# Packages the device image lacks (ml_collections, tensorboardX) travel as wheels in .wheels/
# (git-ignored; fill it with `pip download --no-deps -d .wheels ml_collections tensorboardX`
# and name it in the device call's carry).
set -u
OUT=${OUT:-/tmp/gram_jax_gpu}
# The shapes measured on the GPU; GPU_SUITE_REHEARSAL=1 runs every part at a tiny shape on
# the CPU (tests/cli/test_gpu_suite.py), so that no part breaks where nobody sees it.
if [ "${GPU_SUITE_REHEARSAL:-0}" = 1 ]; then
  PLATFORM=cpu ARCH=tiny ARCH8B=tiny BATCH=2 SEQ=128 SEQS=64,128 STEPS=2 LONG=256
  GROWTH_STEPS=2 PAIRS=8 SCORE_BATCH=4 GEN_BATCH=2 PROMPT=32 NEW=8 LOSS_ARCHS=tiny
  LOSS_SEQ=128
  LOAD="--hidden=64 --layers=2 --vocab=512 --intermediate=128" FT_PAIRS=8 FT_CUTOFF=256
else
  PLATFORM=cuda ARCH=llama3.2-1b ARCH8B=llama3.1-8b BATCH=8 SEQ=2048
  SEQS=512,1024,2048,4096,8192 STEPS=10 GROWTH_STEPS=5 LONG=8192 PAIRS=512 SCORE_BATCH=32
  GEN_BATCH=64
  PROMPT=256 NEW=256 LOSS_ARCHS=llama3.2-1b,qwen3-1.7b,llama3.1-8b LOSS_SEQ=2048
  LOAD="--hidden=4096 --layers=32 --vocab=128256 --intermediate=14336 --dtype=bfloat16"
  FT_PAIRS=1024 FT_CUTOFF=2048
fi
mkdir -p "$OUT"
if ls .wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-deps --no-index .wheels/*.whl 2>&1 | tail -1
fi
python3 - <<'PY' | tee "$OUT/versions.txt"
import jax, flax, optax, orbax.checkpoint, transformers, torch
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "orbax", orbax.checkpoint.__version__, "transformers", transformers.__version__,
      "torch", torch.__version__, jax.devices())
PY
for part in "$@"; do
  start=$(date +%s)
  case $part in
    parity)  # float32 parity with transformers (CPU torch), JAX on the GPU at full precision
      JAX_PLATFORMS=$PLATFORM JAX_DEFAULT_MATMUL_PRECISION=highest timeout 240 \
        python3 -m pytest -q -p no:cacheprovider tests/unit/test_hf_parity.py \
        tests/unit/test_generate.py tests/unit/test_reward.py -k "not mesh" 2>&1 | tail -15 \
        | tee "$OUT/parity.txt" ;;
    attention)  # every kernel vs XLA, then fwd+bwd at 8k vs torch sdpa (flash vs cudnn)
      timeout 240 python3 bench/attention_check.py --time --seq=$LONG 2>&1 | tail -40 \
        | tee "$OUT/attention.json" ;;
    train)
      timeout 300 python3 bench/train_throughput.py --arch=$ARCH --batch=$BATCH --seq=$SEQ \
        --steps=$STEPS --remat=full 2>&1 | tail -40 | tee "$OUT/train.json" ;;
    profile)  # the MFU profile: a trace of the 1B step (open with XProf / TensorBoard)
      timeout 300 python3 bench/train_throughput.py --arch=$ARCH --batch=$BATCH --seq=$SEQ \
        --steps=$STEPS --remat=dots --peers=gram_jax --profile_dir="$OUT/profile" 2>&1 | tail -30 \
        | tee "$OUT/profile.json" ;;
    growth)  # step time and peak memory at 512..8k, gram_jax vs torch eager and compiled
      timeout 580 python3 bench/train_throughput.py --arch=$ARCH --batch=1 \
        --seqs=$SEQS --steps=$GROWTH_STEPS --remat=full 2>&1 | tail -80 \
        | tee "$OUT/growth.json" ;;
    loss)
      timeout 300 python3 bench/loss_memory.py --chunks=0,512,128 --loss_archs=$LOSS_ARCHS \
        --seq=$LOSS_SEQ --batch=$BATCH 2>&1 | tail -40 \
        | tee "$OUT/loss_memory.json" ;;
    finetune)  # needs ../shared/data and the SmolLM2 wheel in .wheels/
      timeout 580 python3 bench/finetune_throughput.py --arch=$ARCH --pairs=$FT_PAIRS \
        --cutoff=$FT_CUTOFF --rows=$BATCH --torch_batch=$BATCH --padding_sets= 2>&1 | tail -40 \
        | tee "$OUT/finetune.json" ;;
    score8b)
      export XLA_PYTHON_CLIENT_PREALLOCATE=false
      timeout 580 python3 bench/score_throughput.py --arch=$ARCH8B --pairs=$PAIRS \
        --batch=$SCORE_BATCH \
        2>&1 | tail -20 | tee "$OUT/score8b.json" ;;
    generate8b)
      export XLA_PYTHON_CLIENT_PREALLOCATE=false
      timeout 580 python3 bench/generate_throughput.py --arch=$ARCH8B --batch=$GEN_BATCH \
        --prompt=$((2 * PROMPT)) --new=$NEW 2>&1 | tail -40 | tee "$OUT/generate8b.json" ;;
    load8b)  # 16 GB of bf16 safetensors on the machine's disk
      timeout 580 python3 bench/load_memory.py $LOAD 2>&1 | tail -20 | tee "$OUT/load8b.json" ;;
    score)  # JAX allocates on demand so the PyTorch side in the same process has room
      export XLA_PYTHON_CLIENT_PREALLOCATE=false
      timeout 300 python3 bench/score_throughput.py --arch=$ARCH --pairs=$PAIRS --batch=$SCORE_BATCH \
        2>&1 | tail -20 | tee "$OUT/score.json" ;;
    generate)
      export XLA_PYTHON_CLIENT_PREALLOCATE=false
      timeout 300 python3 bench/generate_throughput.py --arch=$ARCH --batch=$GEN_BATCH \
        --prompt=$PROMPT --new=$NEW 2>&1 | tail -20 | tee "$OUT/generate.json" ;;
  esac
  echo "== $part: $(( $(date +%s) - start )) s"
done
