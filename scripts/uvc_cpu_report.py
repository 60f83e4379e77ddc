"""Tables for one UVC training run on this CPU: J&F under UVC's own protocol (and, for contrast, its
features L2-normalised under the CRW protocol) before/after, and the readout-collapse diagnostics
along the run.  Writes docs/models/uvc-cpu.{json,md} and the `uvc-cpu` section of BENCHMARKS.md.

  python scripts/uvc_cpu_report.py RUN_DIR --evals EVALS.jsonl --collapse COLLAPSE.json
      [--eval-dir OUT_OF_TRAIN_EVAL] [--no-write]

EVALS.jsonl: the lines `scripts/train_eval.py` printed (any mix of --protocol/--l2 runs);
COLLAPSE.json: `scripts/readout_collapse.py --json` of the run's checkpoints; --eval-dir: train_eval's
--out, for per-sequence better/worse counts against the initial checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def per_sequence(eval_dir: Path, ck: str) -> "dict | None":
    res = eval_dir / f"{Path(ck).parent.name}-{Path(ck).stem}" / "results.json"
    if not res.exists():
        return None
    return {o["Sequence"]: (o["J-Mean"] + o["F-Mean"]) / 2 for o in json.loads(res.read_text())["per_object"]}


def build(run: Path, evals: list[dict], collapse: list[dict], eval_dir: "Path | None" = None) -> dict:
    sys.path.insert(0, str(REPO / "scripts"))
    from family_report import run_summary
    summary = run_summary(run)
    jf = {}
    for r in evals:
        key = "l2_crw" if r.get("l2") else "uvc"
        jf.setdefault(r["step"], {})[key] = r["J&F-Mean"]
    col = {c["step"]: c for c in collapse}
    steps = sorted({*jf, *col})
    table = [{"step": s, "jf_uvc": jf.get(s, {}).get("uvc"), "jf_l2_crw": jf.get(s, {}).get("l2_crw"),
              **{k: col[s][k] for k in ("distinct_top1", "top1_weight", "iou_uvc", "iou_l2") if s in col}}
             for s in steps]
    first, last = min(jf), max(jf)
    if eval_dir is not None:
        seq = {r["step"]: per_sequence(eval_dir, r["checkpoint"]) for r in evals if not r.get("l2")}
        base = seq.get(first)
        for row in table:
            cur = seq.get(row["step"])
            if base and cur and row["step"] != first:
                row["better_worse"] = [sum(cur[k] > base[k] + 1e-9 for k in base), sum(cur[k] < base[k] - 1e-9 for k in base)]
    stages = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    joint = next((r["step"] for r in stages if r.get("stage", 0) >= 2), None)
    return {"run": summary, "joint_from_step": joint, "table": table, "init_step": first, "final_step": last,
            "jf_init": jf[first].get("uvc"), "jf_final": jf[last].get("uvc"),
            "eval": {k: evals[0][k] for k in ("sequences", "frames_per_sequence", "scale", "precision", "device")}}


def _f(v, fmt="{:.3f}") -> str:
    return "–" if v is None else fmt.format(v)


def markdown(rep: dict) -> str:
    s, e = rep["run"], rep["eval"]
    lines = ["## UVC trained on this CPU (`uvc-cpu` config, `scripts/uvc_cpu_report.py`)", "",
             f"`affinity-train --method uvc --config cpu --data ../shared/data/train_videos --max-seconds "
             f"{int(s['seconds'] or 0)}`: {s['steps']} steps x batch {s['batch']} (128 px patches, 256 px joint-phase "
             f"targets, fp32, 2 threads), loss {s['loss_first']:.3f} → {s['loss_last']:.3f}, median {s['clips_per_s']:.2f} "
             f"clips/s; the joint (localisation) phase from step ~{rep['joint_from_step']}. J&F: `scripts/train_eval.py` on {e['sequences']} held-out DAVIS-2016 sequences, first "
             f"{e['frames_per_sequence']} frames, scale {e['scale']}, {e['precision']} on the {e['device']}; UVC's "
             "protocol is the checkpoint's own (unnormalised features, global softmax τ 1, top-5 per reference "
             "unrenormalised, frame 0 + 7 recent predictions). One-step columns: `scripts/readout_collapse.py` "
             "(frame 0 → 5, share of reference cells that are some target's top-1, median top-1 weight, IoU).", "",
             "| step | J&F, UVC protocol | sequences better / worse | J&F, L2 features + CRW protocol | "
             "distinct top-1 | top-1 weight | 1-step IoU, UVC readout | 1-step IoU, L2 readout |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rep["table"]:
        bw = "{} / {}".format(*r["better_worse"]) if r.get("better_worse") else "–"
        lines.append(f"| {r['step']} | {_f(r['jf_uvc'])} | {bw} | {_f(r['jf_l2_crw'])} | {_f(r.get('distinct_top1'), '{:.4f}')} | "
                     f"{_f(r.get('top1_weight'))} | {_f(r.get('iou_uvc'))} | {_f(r.get('iou_l2'))} |")
    lines += ["", f"UVC protocol J&F {rep['jf_init']:.3f} (step {rep['init_step']}) → **{rep['jf_final']:.3f}** "
              f"(step {rep['final_step']}), {rep['jf_final'] - rep['jf_init']:+.3f}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run")
    p.add_argument("--evals", required=True)
    p.add_argument("--collapse", required=True)
    p.add_argument("--eval-dir")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    from engine.atomic import write_text
    from bench_report import write_section
    evals = [json.loads(x) for x in Path(a.evals).read_text().splitlines() if x.strip().startswith("{")]
    rep = build(Path(a.run), evals, json.loads(Path(a.collapse).read_text()),
                Path(a.eval_dir) if a.eval_dir else None)
    md = markdown(rep)
    print(md)
    if not a.no_write:
        write_text(REPO / "docs" / "models" / "uvc-cpu.json", json.dumps(rep, indent=1) + "\n")
        write_text(REPO / "docs" / "models" / "uvc-cpu.md", "# " + md.lstrip("# "))
        write_section("uvc-cpu", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
