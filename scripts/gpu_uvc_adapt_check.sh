#!/usr/bin/env bash
# Second short GPU lease, after scripts/gpu_family_runs.sh:
#  1. adapt-to-this-video on the GPU (issue 9): the default model without / with a 15 s adaptation on
#     each of the 15 held-out DAVIS-2016 sequences, first 30 frames (the subset that travels), 3 at a time;
#  2. UVC diagnostics (issue 8): UVC retrained alone for the same 350 steps it reached in the shared run,
#     its initial and final checkpoints scored with its own protocol and with L2-normalised features
#     under the CRW protocol;
#  3. the UVC / ContrastCorr model-step throughput that failed in the first lease (auto-encoder path).
# Results: $OUT/results2.tgz.
set -u
OUT=${OUT:-/tmp/uvc_out}; DEV=${DEV:-cuda}; PY=${PY:-python3}; D=${D:-.devdata}; W=${W:-/tmp/uvc_work}
ADAPT_BUDGET=${ADAPT_BUDGET:-15}; UVC_STEPS=${UVC_STEPS:-350}; EVAL_FRAMES=${EVAL_FRAMES:-30}; BENCH_STEPS=${BENCH_STEPS:-5}
export PYTHONUNBUFFERED=1
rm -rf "$W"; mkdir -p "$W"/logs "$W"/eval "$W"/bench "$W"/adapt "$OUT"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$W/logs/timeline.log"; }
pack() { cp "$W"/runs/uvc/metrics.jsonl "$W/eval/uvc-metrics.jsonl" 2>/dev/null
         tar czf "$OUT/results2.tgz" -C "$W" logs eval bench adapt 2>/dev/null; }
$PY scripts/videos_to_frames.py "$D/train_videos" "$W/frames" > /dev/null
stamp "start"

for i in 1 2 3; do
  timeout 230 $PY scripts/adapt_eval.py run --budgets "0,$ADAPT_BUDGET" --sequences heldout --davis "$D/davis2016" \
    --frames "$EVAL_FRAMES" --device "$DEV" --tag gpu --work "$W/adapt" > "$W/logs/adapt-$i.log" 2>&1 &
done
wait
stamp "adaptation done"; pack

AE="autoencoder=$D/weights/uvc-lab-autoencoder"
# The shared run's stages went by time (5 % / 45 % / 5 % / 45 %); here the same split in steps.
N=$UVC_STEPS; a=$(( N * 5 / 100 )); b=$(( N * 45 / 100 )); c=$(( N - 2 * a - b ))
STAGES="[{\"steps\": $a, \"lr\": 0.0001, \"joint\": false, \"concentration\": 0.0, \"outlier_threshold\": null},
 {\"steps\": $b, \"lr\": 0.0001, \"joint\": false, \"concentration\": 0.3, \"outlier_threshold\": 2.5},
 {\"steps\": $a, \"lr\": 0.0001, \"joint\": true, \"outlier_threshold\": null},
 {\"steps\": $c, \"lr\": 0.0001, \"joint\": true, \"outlier_threshold\": 2.5}]"
timeout 200 $PY -m train.cli --method uvc --config gpu --data "$W/frames" --out "$W/runs/uvc" --device "$DEV" \
  --max-steps "$N" "$AE" "train.max_seconds=0" "schedule.stages=$STAGES" > "$W/logs/train-uvc.log" 2>&1
stamp "uvc training done"
for ck in "$W"/runs/uvc/checkpoint_0000000.pt "$W"/runs/uvc/checkpoint_last.pt; do
  for opt in "" "--protocol crw --l2"; do
    timeout 120 $PY scripts/train_eval.py "$ck" --davis "$D/davis2016" --out "$W/evalout" --frames "$EVAL_FRAMES" \
      --device "$DEV" --threads 2 $opt >> "$W/eval/uvc-rows.jsonl" 2>> "$W/logs/eval.log" &
  done
done
wait
stamp "uvc evaluation done"; pack
timeout 90 $PY scripts/method_bench.py --data "$W/frames" --device "$DEV" --config gpu --steps "$BENCH_STEPS" \
  --methods uvc contrastcorr --set "$AE" --json "$W/bench/methods-uvc.json" > "$W/logs/method_bench.log" 2>&1
stamp "method bench done"; pack
