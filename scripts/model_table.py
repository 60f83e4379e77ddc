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


def evaluate(args: list[str], out: Path, reuse: bool = False) -> dict:
    done = Path(str(out) + ".json")
    stamp = Path(str(out) + ".args")
    if reuse and done.exists() and stamp.exists() and stamp.read_text() == json.dumps(args):
        print("reusing", done, flush=True)
        return json.loads(done.read_text())
    cmd = [sys.executable, "-m", "engine.cli.evaluate", *args, "--out", str(out), "--json", str(out) + ".json"]
    print("$", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    write_text(stamp, json.dumps(args))
    return json.loads(done.read_text())


def split_means(per_object: list[dict], names: "set[str]") -> dict:
    """J&F, J, F means over the objects of the named sequences (the official global is the same mean)."""
    rows = [o for o in per_object if o["Sequence"].rsplit("_", 1)[0] in names or o["Sequence"] in names]
    if not rows:
        return {}
    j = sum(o["J-Mean"] for o in rows) / len(rows)
    f = sum(o["F-Mean"] for o in rows) / len(rows)
    return {"J&F-Mean": (j + f) / 2, "J-Mean": j, "F-Mean": f, "objects": len(rows)}


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
    ap.add_argument("--reuse", action="store_true", help="reuse an entry's results when its options are unchanged")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    common = ["--scale", str(args.scale), *shlex.split(args.extra)]
    split = json.loads((Path(args.davis) / "sequences.json").read_text())
    tune = set(split.get("tune", []))
    heldout = set(split.get("val", [])) - tune
    rows = []
    for spec in args.entry:
        label, _, opts = spec.partition("=")
        work = Path(args.work) / slug(label)
        t = time.time()
        seq = ["--sequences", args.sequences] if args.sequences else []
        seq += ["--frames", str(args.frames)] if args.frames else []
        d = evaluate([args.davis, *shlex.split(opts), *common, *seq], work / "davis", args.reuse)
        row = {"label": label, "options": opts.strip(), "davis": d["global"],
               "davis_per_sequence": {o["Sequence"]: (o["J-Mean"] + o["F-Mean"]) / 2 for o in d.get("per_object", [])},
               "frames_per_s": d.get("propagation", {}).get("total", {}).get("frames_per_s"),
               "heldout": split_means(d.get("per_object", []), heldout),
               "tune": split_means(d.get("per_object", []), tune)}
        if not args.no_badja:
            for alpha in (0.1, 0.2):
                b = evaluate(["--badja", args.badja, "--frames-dir", args.davis, "--alpha", str(alpha),
                              *shlex.split(opts), *common], work / f"badja-{alpha}", args.reuse)
                row[f"PCK@{alpha}"] = b["global"][f"PCK@{alpha:g}"]
        row["seconds"] = round(time.time() - t, 1)
        rows.append(row)
        print(json.dumps({k: row[k] for k in row if k != "davis_per_sequence"}), flush=True)

    doc = {"settings": {"scale": args.scale, "extra": args.extra, "sequences": args.sequences or "val (20)"},
           "rows": rows}
    write_text(args.out, json.dumps(doc, indent=1) + "\n")
    lines = [f"Settings: scale {args.scale}, {args.extra or 'CRW protocol defaults'}, sequences "
             f"{args.sequences or 'DAVIS-2016 val (20)'}; held-out = the val sequences outside the `tune` split "
             f"({len(heldout)}), on which nothing was tuned.", "",
             "| model | held-out J&F (J / F) | all val J&F (J / F) | PCK@0.1 | PCK@0.2 | frames/s |",
             "|---|---|---|---|---|---|"]
    fmt = (lambda v: "–" if v is None else f"{v:.3f}")

    def jf(g: dict) -> str:
        return "–" if not g else f"**{fmt(g.get('J&F-Mean'))}** ({fmt(g.get('J-Mean'))} / {fmt(g.get('F-Mean'))})"
    for r in rows:
        lines.append(f"| {r['label']} | {jf(r.get('heldout'))} | {jf(r['davis'])} | "
                     f"{fmt(r.get('PCK@0.1'))} | {fmt(r.get('PCK@0.2'))} | {fmt(r.get('frames_per_s'))} |")
    write_text(Path(args.out).with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
