#!/usr/bin/env bash
# Matched-compute training of every method at once on one GPU, then J&F of each run's initial and
# final checkpoints under one protocol, then per-method step throughput and stride-4 inference speed.
# Made for one short lease of the GPU machine (no PyAV there: videos are decoded with OpenCV first);
# everything it measures ends up in $OUT/results.tgz, unpacked and tabulated by
# scripts/family_report.py.  Dry run on a CPU:
#   OUT=/tmp/dry DEV=cpu CONFIG=smoke SECS=20 EVAL_FRAMES=4 EVAL_SEQS=car-shadow BENCH_STEPS=1 \
#     BENCH_ARGS=--cpu-small scripts/gpu_family_runs.sh
set -u
OUT=${OUT:-/tmp/family_out}; DEV=${DEV:-cuda}; CONFIG=${CONFIG:-gpu}; SECS=${SECS:-150}
EVAL_FRAMES=${EVAL_FRAMES:-30}; EVAL_SEQS=${EVAL_SEQS:-heldout}; BENCH_STEPS=${BENCH_STEPS:-5}
BENCH_ARGS=${BENCH_ARGS:-}; PY=${PY:-python3}; D=${D:-.devdata}
W=${W:-/tmp/family_work}
export PYTHONUNBUFFERED=1 PY D W DEV EVAL_FRAMES EVAL_SEQS
rm -rf "$W"; mkdir -p "$W"/runs "$W"/logs "$W"/eval "$W"/bench "$W"/meta "$OUT"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$W/logs/timeline.log"; }
pack() {
  for r in "$W"/runs/*/; do n=$(basename "$r"); mkdir -p "$W/meta/$n"
    cp "$r"/config.json "$r"/metrics.jsonl "$W/meta/$n/" 2>/dev/null; done
  tar czf "$OUT/results.tgz" -C "$W" logs meta eval bench 2>/dev/null
}

stamp "start on $DEV: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null)"
$PY -c "import torch, cv2, numpy; print('torch', torch.__version__, 'cv2', cv2.__version__, 'cuda', torch.cuda.is_available())" \
  | tee -a "$W/logs/timeline.log"
$PY scripts/videos_to_frames.py "$D/train_videos" "$W/frames" | tee -a "$W/logs/timeline.log"

# 1. Training: all methods at once, the same wall-clock budget each (STT: step 1 then step 2 in it).
AE="autoencoder=$D/weights/uvc-lab-autoencoder"
train() {  # method, seconds, extra overrides...
  local m=$1 s=$2; shift 2
  timeout $(( s + 150 )) $PY -m train.cli --method "$m" --config "$CONFIG" --data "$W/frames" --out "$W/runs/$m" \
    --device "$DEV" --max-seconds "$s" "$@" > "$W/logs/train-$m.log" 2>&1
  echo "$m exit $?" >> "$W/logs/timeline.log"
}
stamp "training ${SECS}s each"
for m in crw jstg mast liir; do train "$m" "$SECS" & done
train uvc "$SECS" "$AE" &
train contrastcorr "$SECS" "$AE" &
( train stt_spatial $(( SECS / 3 ))
  train stt $(( SECS - SECS / 3 )) "teacher=$W/runs/stt_spatial/checkpoint_last.pt" ) &
wait
stamp "training done"; pack

# 2. J&F before/after: every run's step-0 and last checkpoint, one protocol (train_eval.py).
evaluate() {
  $PY scripts/train_eval.py "$1" --davis "$D/davis2016" --out "$W/evalout" --frames "$EVAL_FRAMES" \
    --sequences "$EVAL_SEQS" --device "$DEV" --threads 2 >> "$W/eval/rows.jsonl" 2>> "$W/logs/eval.log"
  n=$(basename "$(dirname "$1")")-$(basename "$1" .pt)
  cp "$W/evalout/$n/results.json" "$W/eval/$n.json" 2>/dev/null
}
export -f evaluate
ls "$W"/runs/*/checkpoint_0000000.pt "$W"/runs/*/checkpoint_last.pt \
  | timeout 200 xargs -P 8 -I{} bash -c 'evaluate {}'
stamp "evaluation done ($(wc -l < "$W/eval/rows.jsonl") rows)"; pack

# 3. Model-step throughput and peak memory per method (one process at a time, nothing else running).
timeout 110 $PY scripts/method_bench.py --data "$W/frames" --device "$DEV" --config "$CONFIG" \
  --steps "$BENCH_STEPS" $BENCH_ARGS --json "$W/bench/methods.json" > "$W/logs/method_bench.log" 2>&1
stamp "method bench done"; pack

# 4. Stride-4 (and stride-8) inference speed on a DAVIS 854x480 sequence, random weights.
SEQ=$(ls -d "$D"/davis2016/*/JPEGImages | head -1)
for run in mast-r18-s4:1.0 liir-r18-s4:1.0 stt-r18-s4:1.0 crw-r18-s8:1.0 mast-r18-s4:0.5; do
  spec=${run%:*} scale=${run#*:}
  timeout 40 $PY -m engine.cli.bench "$SEQ" --frames 30 --random-init --model "$spec" --device "$DEV" \
    --scale "$scale" --json "$W/bench/infer-$spec-$scale.json" >> "$W/logs/infer_bench.log" 2>&1
done
stamp "inference bench done"; pack
