"""Tables from a `scripts/gpu_family_runs.sh` results.tgz: the matched-compute comparison of every
method (J&F of the initial and final checkpoint), training throughput and peak memory, and inference
speed.  Writes docs/models/family-<tag>.{json,md} and the `families` section of BENCHMARKS.md.

  python scripts/family_report.py RESULTS.tgz --tag gpu [--device-name "one NVIDIA H200"] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORDER = ["crw", "jstg", "mast", "liir", "stt_spatial", "stt", "uvc", "contrastcorr"]
FAMILY = {"crw": "random walk", "jstg": "random walk", "mast": "reconstruction", "liir": "reconstruction",
          "stt_spatial": "reconstruction (STT step 1)", "stt": "reconstruction (STT step 2)",
          "uvc": "transformation", "contrastcorr": "transformation"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def run_summary(meta: Path) -> dict:
    cfg = json.loads((meta / "config.json").read_text())
    rows = [r for r in _rows(meta / "metrics.jsonl") if r.get("kind") != "eval"]
    if not rows:
        return {"run": meta.name, "steps": 0}
    batch = int(cfg["train"]["batch_size"])
    k = max(1, len(rows) // 10)
    return {"run": meta.name, "model": cfg.get("model"), "steps": rows[-1]["step"], "batch": batch,
            "clips": rows[-1]["step"] * batch, "clip_len": cfg["data"]["clip_len"],
            "seconds": cfg["train"].get("max_seconds"),
            "loss_first": statistics.mean(r["loss"] for r in rows[:k]),
            "loss_last": statistics.mean(r["loss"] for r in rows[-k:]),
            "clips_per_s": statistics.median(r["clips_per_s"] for r in rows if r.get("clips_per_s")),
            "peak_gpu_mb": max((r.get("peak_gpu_mb") or 0) for r in rows) or None}


def evals(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        run = Path(r["checkpoint"]).parent.name
        which = "init" if r["step"] == 0 else "final"
        out.setdefault(run, {})[which] = r
    return out


def build(root: Path, device_name: str, second: "Path | None" = None) -> tuple[dict, str]:
    runs = {p.name: run_summary(p) for p in sorted((root / "meta").iterdir()) if p.is_dir()}
    ev = evals(_rows(root / "eval" / "rows.jsonl"))
    bench = json.loads((root / "bench" / "methods.json").read_text()) if (root / "bench" / "methods.json").exists() else []
    uvc_diag = []
    if second is not None:   # scripts/gpu_uvc_adapt_check.sh: UVC retrained alone + its step throughput
        redo = {r["method"]: r for r in json.loads((second / "bench" / "methods-uvc.json").read_text())}
        bench = [redo.get(b["method"], b) if "error" in b else b for b in bench]
        uvc_diag = _rows(second / "eval" / "uvc-rows.jsonl")
    infer = [{**json.loads(p.read_text()), "spec": p.stem[len("infer-"):].rsplit("-", 1)[0]}
             for p in sorted((root / "bench").glob("infer-*.json"))]
    timeline = (root / "logs" / "timeline.log").read_text() if (root / "logs" / "timeline.log").exists() else ""
    data = {"device": device_name, "runs": runs, "evals": ev, "method_bench": bench, "inference": infer,
            "uvc_diagnostics": uvc_diag, "timeline": timeline}
    any_eval = next((e for r in ev.values() for e in r.values()), {})
    md = [f"Matched compute on {device_name}: every method trained at the same time on the one GPU for the "
          f"same wall-clock budget ({runs.get('crw', {}).get('seconds')} s of training loop each; STT: step 1 "
          "for the first third, step 2 for the rest), from the same random initialisation seed, 2 decoding "
          "workers each, bf16 autocast, configs `train/configs/*-gpu.json`, data `../shared/data/train_videos` "
          "(21 clips, decoded to JPEG frame folders). J&F: `scripts/train_eval.py` on the "
          f"{any_eval.get('sequences', '?')} held-out DAVIS-2016 val sequences, first "
          f"{any_eval.get('frames_per_sequence', '?')} frames, scale {any_eval.get('scale', '?')}, each "
          "checkpoint with its method's own inference protocol (from its model spec), on the GPU.", "",
          "| method | family | steps x batch (clips) | loss first → last 10 % | J&F init | J&F after | change |",
          "|---|---|---|---|---:|---:|---:|"]
    for m in ORDER:
        r, e = runs.get(m), ev.get(m, {})
        if not r:
            continue
        ji = e.get("init", {}).get("J&F-Mean")
        jf = e.get("final", {}).get("J&F-Mean")
        ch = f"{jf - ji:+.3f}" if ji is not None and jf is not None else "–"
        loss = f"{r['loss_first']:.3f} → {r['loss_last']:.3f}" if r.get("steps") else "–"
        md.append(f"| {m} | {FAMILY[m]} | {r.get('steps', 0)} x {r.get('batch', '?')} ({r.get('clips', 0)}) | {loss} | "
                  f"{ji if ji is not None else '–'} | {jf if jf is not None else '–'} | {ch} |")
    if "stt" in ev and "stt_spatial" in ev:
        a, b = ev["stt_spatial"].get("init", {}).get("J&F-Mean"), ev["stt"].get("final", {}).get("J&F-Mean")
        if a is not None and b is not None:
            md += ["", f"STT end to end (random init → step 1 → step 2): {a} → "
                       f"{ev['stt_spatial'].get('final', {}).get('J&F-Mean')} → {b} ({b - a:+.3f})."]
    if uvc_diag:
        md += ["", f"UVC diagnostics (a second lease): UVC retrained alone for the {uvc_diag[0].get('step') or uvc_diag[-1].get('step')} "
                   "steps it reached above (same data order, the same stage split in steps), each checkpoint scored "
                   "with UVC's own protocol (unnormalised features, global softmax τ 1, top-5 per reference) and "
                   "with L2-normalised features under the CRW protocol:", "",
               "| checkpoint | UVC protocol J&F | L2 features, CRW protocol J&F |", "|---|---:|---:|"]
        for step in sorted({r["step"] for r in uvc_diag}):
            own = next((r["J&F-Mean"] for r in uvc_diag if r["step"] == step and not r.get("l2")), None)
            l2 = next((r["J&F-Mean"] for r in uvc_diag if r["step"] == step and r.get("l2")), None)
            md.append(f"| step {step} | {own} | {l2} |")
    md += ["", "Training throughput while sharing the GPU (logged clips/s, median over the run; peak CUDA "
               "allocator memory of the process):", "",
           "| method | clips/s (shared GPU) | peak GPU MB |", "|---|---:|---:|"]
    for m in ORDER:
        r = runs.get(m)
        if r and r.get("steps"):
            md.append(f"| {m} | {r['clips_per_s']:.2f} | {r['peak_gpu_mb'] or 0:.0f} |")
    if bench:
        md += ["", "Model step alone on the GPU (`scripts/method_bench.py`: forward + backward + Adam through "
                   "the trainer on one real batch, last stage of each recipe, median of the timed steps; "
                   "one process at a time):", "",
               "| method | batch x frames | precision | s/step | clips/s | peak GPU MB |", "|---|---|---|---:|---:|---:|"]
        for b in bench:
            if "error" in b:
                md.append(f"| {b['method']} | failed: {b['error'][:80]} | | | | |")
            else:
                md.append(f"| {b['method']} | {b['batch']} x {b['clip_len']} | {b['precision']} | {b['s_per_step']:.3f} | "
                          f"{b['clips_per_s']:.1f} | {b.get('peak_gpu_mb', 0):.0f} |")
    if infer:
        md += ["", "Inference (`python -m engine.cli.bench` on a DAVIS 854x480 sequence, 30 frames, random "
                   "weights, each spec's own protocol):", "",
               "| model | processing size | features ms | affinity ms | steady frames/s | end-to-end frames/s | peak GPU MB |",
               "|---|---|---:|---:|---:|---:|---:|"]
        for r in infer:
            s = r["stage_median_ms"]
            md.append(f"| {r['spec']} | {r['processing_size'][0]}x{r['processing_size'][1]} | "
                      f"{s.get('features_ms')} | {s.get('affinity_ms')} | {r['steady_fps']} | {r['fps']} | "
                      f"{r.get('peak_cuda_mb') or 0:.0f} |")
    return data, "\n".join(md)


def main(argv=None) -> int:
    sys.path.insert(0, str(REPO))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--tag", default="gpu")
    p.add_argument("--device-name", default="one NVIDIA H200")
    p.add_argument("--second", help="results of scripts/gpu_uvc_adapt_check.sh (a .tgz)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(a.results) as t:
            t.extractall(Path(tmp) / "first", filter="data")
        if a.second:
            with tarfile.open(a.second) as t:
                t.extractall(Path(tmp) / "second", filter="data")
        data, md = build(Path(tmp) / "first", a.device_name, Path(tmp) / "second" if a.second else None)
    print(md)
    if not a.no_write:
        from engine import atomic
        from scripts.bench_report import write_section
        atomic.write_text(REPO / "docs" / "models" / f"family-{a.tag}.json", json.dumps(data, indent=1) + "\n")
        atomic.write_text(REPO / "docs" / "models" / f"family-{a.tag}.md", md + "\n")
        write_section("families", "## Methods compared at matched compute (`scripts/gpu_family_runs.sh`)\n\n" + md)
        print(f"wrote docs/models/family-{a.tag}.json/.md and the families section of BENCHMARKS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
