#!/usr/bin/env bash
# Every GPU path of dcue in one prepared run, for a machine with a CUDA GPU (about 10 minutes on
# an H100/H200): the CUDA-only tests, `train` against its compute ceiling (fp32, bf16,
# bf16 + torch.compile, the paper's batch of 10, song-grouped batches, the 2-D front end), `embed` and
# `melspec --device cuda` timed, and the GPU mel checked against the CPU one. The log goes to
# $OUT/gpu_check.log (default ./gpu-check/); copy its figures into benchmarks/RESULTS.md.
#
#   bash benchmarks/gpu_check.sh
#   WORKDIR=/scratch/gpu-check STEP_LIMIT=300 bash benchmarks/gpu_check.sh
#   DEVICE=cpu ITEMS=200 SONGS=4 STEPS=2 PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh  # try it here
#
# Wheels in .whl/ (soundfile, soxr, librosa, implicit, ... for a bare image) are installed to
# /tmp/site first when present.
set -uo pipefail

OUT=${OUT:-gpu-check}
WORKDIR=${WORKDIR:-/tmp/dcue-gpu-check}
STEP_LIMIT=${STEP_LIMIT:-150}
ITEMS=${ITEMS:-10000}  # MSD-shaped mels for train_bench (10,000 x 30 s); SONGS: MP3s for melspec
SONGS=${SONGS:-600}
DEVICE=${DEVICE:-cuda}  # cpu: the same steps without a GPU, to try the script itself
STEPS=${STEPS:-50}      # timed training steps per train_bench run
mkdir -p "$OUT" "$WORKDIR"
exec > >(tee "$OUT/gpu_check.log") 2>&1

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

step() {  # step NAME COMMAND...: run it under a time limit, say how it ended and how long it took
  local name=$1 start=$SECONDS
  shift
  printf '\n== %s\n$ %s\n' "$name" "$*"
  timeout "$STEP_LIMIT" "$@"
  printf '(%s: exit %s, %s s)\n' "$name" "$?" "$((SECONDS - start))"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "(no nvidia-smi)"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA DEVICE')"

step "CUDA-only tests" $PY -m pytest -q -p no:cacheprovider tests/test_audio.py tests/test_melspec.py tests/test_embed.py \
  tests/test_autotag.py tests/test_train.py tests/test_recommend.py -k "cuda or gpu"

bench=($PY benchmarks/train_bench.py --workdir "$WORKDIR" --items "$ITEMS" --device "$DEVICE" --steps "$STEPS")
step "train fp32, batch 256" "${bench[@]}" --batch-size 256
step "train bf16, batch 256" "${bench[@]}" --batch-size 256 --bf16
step "train bf16 + compile, batch 256" "${bench[@]}" --batch-size 256 --bf16 --compile
step "train, the paper's batch of 10 and 21 crops a pair" "${bench[@]}" --batch-size 10 --per-user-negatives \
  --no-in-batch-negatives
step "train bf16, song-grouped batch 2048 x 32 listeners" "${bench[@]}" --batch-size 2048 --listeners-per-song 32 \
  --bf16
step "train bf16, song-grouped batch 2048 x 32 listeners, the 2-D front end (--stem-channels 16,16)" "${bench[@]}" \
  --batch-size 2048 --listeners-per-song 32 --bf16 --stem-channels 16,16

model=$WORKDIR/bench-model.pt
mels=$(ls "$WORKDIR"/mels-*.h5 2>/dev/null | head -1)
if [ -e "$model" ] && [ -n "$mels" ]; then
  step "embed on $DEVICE (every item of the MSD-shaped mels)" $PY -m dcue_cli embed "$model" "$mels" \
    -o "$WORKDIR/emb-$DEVICE.h5" --device "$DEVICE"
fi

step "recommend on $DEVICE: 1M users x 380k songs, 256-d, top-100 (20,000 users ranked, extrapolated)" \
  $PY benchmarks/recommend_bench.py --sample "${RECOMMEND_SAMPLE:-20000}" --device "$DEVICE"

audio=$WORKDIR/synth
[ -d "$audio/audio" ] || step "synth MP3s for melspec" $PY -m dcue_cli -q synth "$audio" --songs "$SONGS" --users 50 \
  --seconds 30 --sample-rate 44100 --jobs 8
# float32 output: the 1e-3 agreement is on the computed values, before float16 storage rounds them.
step "melspec cpu, 8 workers" $PY -m dcue_cli melspec "$audio/audio" -o "$WORKDIR/mel-cpu.h5" -j 8 \
  --dtype float32 --overwrite
step "melspec $DEVICE (8 decoding workers, STFT and mel on the torch device)" $PY -m dcue_cli melspec "$audio/audio" \
  -o "$WORKDIR/mel-gpu.h5" -j 8 --device "${DEVICE/cpu/cpu-torch}" --dtype float32 --overwrite
step "GPU mel against CPU mel (issue 3: within 1e-3)" $PY - "$WORKDIR/mel-cpu.h5" "$WORKDIR/mel-gpu.h5" <<'EOF'
import sys
import numpy as np
from dcue_cli.io.mels import MelsFile
with MelsFile(sys.argv[1]) as cpu, MelsFile(sys.argv[2]) as gpu:
    where = gpu.index()
    worst = max(float(np.abs(cpu.item(k) - gpu.item(where[item])).max()) for k, item in enumerate(cpu.ids))
print(f"largest difference over {len(cpu)} items: {worst:.2e} ({'within' if worst <= 1e-3 else 'OVER'} 1e-3)")
EOF
echo
echo "done: $OUT/gpu_check.log"
