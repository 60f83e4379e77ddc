"""Ship a trained checkpoint as the bundled default: resources/models/default.pt + MODEL_CARD.md.

  python scripts/ship_default_model.py RUN_DIR/checkpoint_0000300.pt --row "CRW, 300 steps (ours)" \\
      --table docs/models/table.json --tuning docs/models/tuning.json \\
      --hardware "2-core Xeon CPU, no GPU" --train-minutes 100

The weights are stored in half precision with only the layers inference uses
(`engine.models.save_inference_checkpoint`).  The propagation values chosen on the tune split
(`scripts/tune_propagation.py`) become the model spec's protocol hints, so every client (CLIs, GUI)
propagates with them unless the user overrides them.  The card is stored inside the checkpoint and
written next to it as Markdown with the measured tables pasted in; the load time goes to the card and
to the `default-model` section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_report import write_section  # noqa: E402
from engine.atomic import write_text  # noqa: E402
from engine.models import load_encoder  # noqa: E402
from engine.models.checkpoints import read_checkpoint, save_inference_checkpoint  # noqa: E402

TUNED = ("topk", "temperature", "context", "radius")
LOAD_PROBE = ("import time; t = time.perf_counter(); from engine.models import load_encoder; "
              "enc = load_encoder(); print(time.perf_counter() - t)")


def load_seconds(repeats: int = 5) -> list[float]:
    """Import + load of the default in a fresh interpreter, as an app start pays it."""
    out = []
    for _ in range(repeats):
        r = subprocess.run([sys.executable, "-c", LOAD_PROBE], cwd=REPO, check=True, capture_output=True, text=True)
        out.append(float(r.stdout.strip().splitlines()[-1]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--row", required=True, help="label of this model's row in --table")
    ap.add_argument("--table", required=True, action="append",
                    help="scripts/model_table.py output (JSON; the .md beside it is pasted); repeatable, the "
                         "first one gives the card's metrics")
    ap.add_argument("--tuning", required=True, help="scripts/tune_propagation.py output (JSON; its .md is pasted)")
    ap.add_argument("--hardware", required=True)
    ap.add_argument("--train-minutes", type=float, required=True)
    ap.add_argument("--out", default=str(REPO / "resources" / "models" / "default.pt"))
    args = ap.parse_args()

    raw = read_checkpoint(args.checkpoint)
    encoder = load_encoder(checkpoint=args.checkpoint)
    tables = [json.loads(Path(t).read_text()) for t in args.table]
    table = tables[0]
    tuning = json.loads(Path(args.tuning).read_text())
    ours = next(r for r in table["rows"] if r["label"] == args.row)
    chosen = tuning["chosen"]["params"]
    encoder.spec = dataclasses.replace(
        encoder.spec, **{k: (int(chosen[k]) if k in ("topk", "context") else float(chosen[k])) for k in TUNED},
        description=encoder.spec.description + " Protocol values tuned on the DAVIS-2016 tune split.")
    data = dict(raw.get("data") or {})
    card = {
        "name": "affinity-annotator default (CRW, CPU-trained)",
        "method": str(raw.get("method", "crw")),
        "step": int(raw.get("step") or 0),
        "config": dict(raw.get("config") or {}),
        "data": {**{k: v for k, v in data.items() if k != "skipped"},
                 "root": "../shared/data/" + Path(str(data.get("root", "train_videos"))).name},
        "metrics": {"davis2016_val": ours["davis"], "davis2016_heldout15": ours.get("heldout"),
                    "badja": {k: ours.get(k) for k in ("PCK@0.1", "PCK@0.2")}, "table_settings": table["settings"],
                    "other_settings": [{"settings": t["settings"], **{k: r.get(k) for k in
                                        ("davis", "heldout", "PCK@0.1", "PCK@0.2")}}
                                       for t in tables[1:] for r in t["rows"] if r["label"] == args.row]},
        "protocol": {k: chosen[k] for k in TUNED},
        "hardware": args.hardware, "train_minutes": args.train_minutes,
        "shipped": time.strftime("%Y-%m-%d"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_inference_checkpoint(encoder, out, card)
    secs = load_seconds()
    load_s = statistics.median(secs)

    cfg = card["config"]
    aug, tr = cfg.get("augment", {}), cfg.get("train", {})
    lines = [
        f"# Model card: {card['name']}", "",
        f"- **File**: `resources/models/default.pt` ({out.stat().st_size / 2 ** 20:.1f} MB: fp16 weights of the "
        f"layers inference uses, upcast to fp32 on load). Import + load in a fresh process: median {load_s:.2f} s "
        f"over {len(secs)} runs on {args.hardware}.",
        f"- **Method**: CRW, the contrastive random walk (research spec §3), trained with this repository's `train` "
        f"package (`affinity-train --method crw --config cpu`). Model spec `{encoder.spec.name}`: ResNet-18 "
        f"trunk to layer3, stride 8, reflect padding, 256-d L2-normalised features, ImageNet normalisation.",
        f"- **Training data**: the {card['data'].get('sources', '?')} unlabelled clips of `../shared/data/train_videos` "
        "(no DAVIS val frame; `../shared` has no DAVIS-2016 training sequence with frames other than the four "
        "`davis_train-*` clips, which are among them). No labels of any kind.",
        f"- **Training**: {card['step']} optimiser steps from random initialisation, {args.train_minutes:.0f} min on "
        f"{args.hardware}; clips of {cfg.get('data', {}).get('clip_len', '?')} frames at "
        f"{aug.get('frame_size', '?')} px, a 7x7 grid of {aug.get('patch_size', '?')} px patches, batch "
        f"{tr.get('batch_size', '?')}, Adam lr {cfg.get('optim', {}).get('lr', '?')}, walk temperature "
        f"{cfg.get('loss', {}).get('temperature', '?')}, edge dropout {cfg.get('loss', {}).get('edge_dropout', '?')}, "
        f"bf16 autocast (curves: `docs/models/default-training-curves.png`; method notes: `docs/TRAINING.md`).",
        f"- **Propagation defaults stored in the model** (tuned on the `tune` split only): top-k {chosen['topk']:g}, "
        f"temperature {chosen['temperature']:g}, context {chosen['context']:g} frames, radius {chosen['radius']:g} "
        "feature cells. The CLIs and the app use them unless overridden.",
        "- **Intended use**: the annotator's out-of-the-box propagation, on a CPU. It is far from the published "
        "CRW (J&F 67.6 on DAVIS-2017 after days on a GPU on Kinetics): it was trained for under two hours on a "
        "2-core CPU on 21 short clips.",
        "", "## Measured quality", "",
        "Every row through `affinity-evaluate` with the same settings (`scripts/model_table.py`). The frames/s "
        "column comes from runs that shared the 2 cores with training or other evaluations; speed on an idle "
        "machine is in BENCHMARKS.md.", "",
        *[Path(t).with_suffix(".md").read_text().strip() + "\n" for t in args.table],
        "## Propagation parameters (tune split only)", "", Path(args.tuning).with_suffix(".md").read_text().strip(), "",
        "## Limits", "",
        "- Small objects, thin structures, fast motion and long occlusions drift: correct a frame and re-propagate.",
        "- Compare with the optical-flow row above before trusting it on your data; for the authors' quality, "
        "load a published checkpoint (`docs/CHECKPOINTS.md`) in Settings or with `--checkpoint`.",
    ]
    write_text(out.parent / "MODEL_CARD.md", "\n".join(lines) + "\n")
    write_section("default-model", "\n".join([
        "## Bundled default model: load time (`python scripts/ship_default_model.py`)", "",
        f"`resources/models/default.pt`, {out.stat().st_size / 2 ** 20:.1f} MB fp16. Import of `engine.models` + "
        f"`load_encoder()` in a fresh Python process, {len(secs)} runs: median {load_s:.2f} s "
        f"(min {min(secs):.2f}, max {max(secs):.2f}); target < 2 s.",
    ]))
    print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.1f} MB; load median {load_s:.2f} s) and MODEL_CARD.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
