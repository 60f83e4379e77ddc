"""The model-vs-baseline table of the default-model card: DAVIS-2016 val J&F and BADJA PCK per entry.

Every entry runs through `affinity-evaluate` with the same propagation settings, so the rows differ
only in the model.  Usage:

  python scripts/model_table.py --entry "CRW (ours)=--checkpoint runs/crw/checkpoint_last.pt" \\
      --entry "random init=--random-init --model crw-r18-s8" --entry "DIS flow=--baseline dis-flow" \\
      --scale 0.5 --out docs/models/table.json [--sequences a,b] [--no-badja]

Per-entry results land in --work/<slug>/{davis,badja-0.1,badja-0.2}; the table (JSON + Markdown) is
written atomically to --out and --out with .md.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from engine.atomic import write_text  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def evaluate(args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "engine.cli.evaluate", *args, "--out", str(out), "--json", str(out) + ".json"]
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return json.loads(Path(str(out) + ".json").read_text())


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entry", action="append", required=True, help='"LABEL=affinity-evaluate model options"')
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--extra", default="", help="more affinity-evaluate options for every entry (e.g. --topk 5)")
    ap.add_argument("--sequences", default=None)
    ap.add_argument("--frames", type=int, default=None, help="DAVIS only: first N frames per sequence (quick checks)")
    ap.add_argument("--davis", default=str(SHARED / "davis2016"))
    ap.add_argument("--badja", default=str(SHARED / "badja"))
    ap.add_argument("--no-badja", action="store_true")
    ap.add_argument("--work", default="/tmp/model_table")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    common = ["--scale", str(args.scale), *shlex.split(args.extra)]
    rows = []
    for spec in args.entry:
        label, _, opts = spec.partition("=")
        work = Path(args.work) / slug(label)
        t = time.time()
        seq = ["--sequences", args.sequences] if args.sequences else []
        seq += ["--frames", str(args.frames)] if args.frames else []
        d = evaluate([args.davis, *shlex.split(opts), *common, *seq], work / "davis")
        row = {"label": label, "options": opts.strip(), "davis": d["global"],
               "davis_per_sequence": {o["Sequence"]: (o["J-Mean"] + o["F-Mean"]) / 2 for o in d.get("per_object", [])},
               "frames_per_s": d.get("propagation", {}).get("total", {}).get("frames_per_s")}
        if not args.no_badja:
            for alpha in (0.1, 0.2):
                b = evaluate(["--badja", args.badja, "--frames-dir", args.davis, "--alpha", str(alpha),
                              *shlex.split(opts), *common], work / f"badja-{alpha}")
                row[f"PCK@{alpha}"] = b["global"][f"PCK@{alpha:g}"]
        row["seconds"] = round(time.time() - t, 1)
        rows.append(row)
        print(json.dumps({k: row[k] for k in row if k != "davis_per_sequence"}), flush=True)

    doc = {"settings": {"scale": args.scale, "extra": args.extra, "sequences": args.sequences or "val (20)"},
           "rows": rows}
    write_text(args.out, json.dumps(doc, indent=1) + "\n")
    lines = [f"Settings: scale {args.scale}, {args.extra or 'CRW protocol defaults'}, sequences "
             f"{args.sequences or 'DAVIS-2016 val (20)'}.", "",
             "| model | J&F | J | F | PCK@0.1 | PCK@0.2 | frames/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["davis"]
        fmt = (lambda v: "–" if v is None else f"{v:.3f}")
        lines.append(f"| {r['label']} | {fmt(g.get('J&F-Mean'))} | {fmt(g.get('J-Mean'))} | {fmt(g.get('F-Mean'))} | "
                     f"{fmt(r.get('PCK@0.1'))} | {fmt(r.get('PCK@0.2'))} | {fmt(r.get('frames_per_s'))} |")
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
