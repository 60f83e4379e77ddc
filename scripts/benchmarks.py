"""Run the engine benchmarks and write BENCHMARKS.md (numbers + the commands that produced them).

Each configuration runs `affinity-bench` in its own process, so peak RSS is per configuration.
Usage: python scripts/benchmarks.py [--only SUBSTRING] [--out BENCHMARKS.md]

Raw results are kept per configuration in docs/benchmarks/engine.json (with the machine's load
average when each ran), so `--only memory` re-measures some rows and keeps the others.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_report import write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo" / "demo.mp4"
MASK = REPO / "resources" / "demo" / "demo_mask_00000.png"
RAW = REPO / "docs" / "benchmarks" / "engine.json"


def bench(args: list[str]) -> tuple[dict, str]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "b.json"
        cmd = [sys.executable, "-m", "engine.cli.bench", *args, "--json", str(out)]
        subprocess.run(cmd, check=True, cwd=REPO)
        shown = "affinity-bench " + " ".join(shlex.quote(a if not a.startswith(str(REPO)) else str(Path(a).relative_to(REPO))) for a in args)
        return json.loads(out.read_text()), shown


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--long", type=int, default=2000, help="frames of the long run for the memory check")
    ap.add_argument("--threads", default="2", help="torch threads (1 when other jobs share the cores: "
                                                   "2 threads on 2 busy cores thrash OpenMP)")
    ap.add_argument("--only", default=None, help="re-measure only configurations whose name contains this")
    args = ap.parse_args()
    model = ["--random-init", "--threads", args.threads]  # speed does not depend on the weights' values
    base = [str(DEMO), "--mask", str(MASK), "--frames", str(args.frames), *model]
    configs = [
        ("full protocol, 854x480, default precision (bf16 search + fp32 re-score)", base),
        ("full protocol, 854x480, exact fp32", base + ["--precision", "fp32"]),
        ("preview: scale 0.5 (427x240)", base + ["--scale", "0.5"]),
        ("memory, scale 0.25, 100 frames", [str(DEMO), "--mask", str(MASK), "--loop", "100", *model, "--scale", "0.25"]),
        (f"memory, scale 0.25, {args.long} frames", [str(DEMO), "--mask", str(MASK), "--loop", str(args.long), *model, "--scale", "0.25"]),
    ]
    import os
    from engine.atomic import write_text
    stored = json.loads(RAW.read_text()) if RAW.exists() else {}
    rows = []
    for name, a in configs:
        if args.only is not None and args.only not in name and name in stored:
            rows.append((name, stored[name]["result"], stored[name]["command"], stored[name]["load"]))
            continue
        t = time.time()
        load = round(os.getloadavg()[0], 1)
        res, cmd = bench(a)
        rows.append((name, res, cmd, load))
        stored[name] = {"result": res, "command": cmd, "load": load, "date": time.strftime("%Y-%m-%d %H:%M")}
        write_text(RAW, json.dumps(stored, indent=1))
        print(f"{name}: {res['fps']} frames/s, steady {res['steady_fps']}, peak RSS {res['peak_rss_mb']} MB "
              f"({time.time() - t:.0f} s)", flush=True)
    lines = ["## Engine: propagation speed and memory", "",
             "Produced by `python scripts/benchmarks.py`. Per-stage numbers are medians over frames "
             "(the first frames, which build caches, are excluded); `fps` is end to end over the whole run "
             "(decode + features + affinity + label decoding), `steady fps` is 1000 / the sum of the stage medians; "
             "`load` is the machine's 1-minute load average when the row started (2 cores: above ~1 means other work "
             "competed for the CPU).", "",
             "| configuration | load | frames | processing size | precision | fps (end to end) | steady fps | decode ms | features ms | affinity ms | label decode ms | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r, _, load in rows:
        m = r["stage_median_ms"]
        lines.append(f"| {name} | {load} | {r['frames']} | {r['processing_size'][0]}x{r['processing_size'][1]} | {r['precision']} | "
                     f"{r['fps']} | {r['steady_fps']} | {m['decode_video_ms']} | {m['features_ms']} | {m['affinity_ms']} | "
                     f"{m['decode_ms']} | {r['peak_rss_mb']} |")
    short, long_ = rows[-2][1]["peak_rss_mb"], rows[-1][1]["peak_rss_mb"]
    lines += ["", f"Peak memory, {rows[-1][1]['frames']} vs {rows[-2][1]['frames']} frames: {long_} MB vs {short} MB "
              f"({(long_ - short) / short:+.1%}).", "", "Commands:", ""]
    lines += [f"- {name}: `{cmd}`" for name, _, cmd, _ in rows]
    write_section("engine", "\n".join(lines), Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
