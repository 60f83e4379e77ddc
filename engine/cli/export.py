"""affinity-export: write a saved project's labels as DAVIS PNGs, COCO JSON, keypoint CSV or an
overlay video (any combination in one run)."""
from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from . import common


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affinity-export", description=__doc__)
    p.add_argument("project", help="project folder (holding project.json)")
    p.add_argument("--masks", metavar="DIR", help="DAVIS palette PNGs 00000.png... (folder replaced as a whole)")
    p.add_argument("--coco", metavar="FILE", help="COCO JSON with RLE masks and keypoints")
    p.add_argument("--csv", metavar="FILE", help="keypoint CSV: frame, point, x, y, visible, source, confidence")
    p.add_argument("--video", metavar="FILE", help="overlay MP4 of the labels on the frames")
    p.add_argument("--source-video", metavar="PATH",
                   help="the project's video, when it has moved since the project was saved")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="open the project even if the video's fingerprint differs")
    p.add_argument("--no-stale", action="store_true",
                   help="leave out stale results (propagated from a keyframe that has since changed)")
    p.add_argument("--all-frames", action="store_true", help="COCO: list every frame as an image, not only labelled ones")
    p.add_argument("--opacity", type=float, default=0.5, help="overlay video: mask opacity 0..1")
    p.add_argument("--codec", help="overlay video encoder (default libx264, else mpeg4)")
    p.add_argument("--json", help="write a summary of what was written here (machine-readable)")
    return p


def _main(args) -> int:
    from .. import export as ex
    from ..session import AnnotationSession
    from ..video import VideoSource

    targets = [(fmt, getattr(args, fmt)) for fmt in ("masks", "coco", "csv", "video") if getattr(args, fmt)]
    if not targets:
        raise ConfigError(None, "nothing to do: give at least one of --masks, --coco, --csv, --video")
    if not 0 <= args.opacity <= 1:
        raise ConfigError(None, f"--opacity must be in 0..1, got {args.opacity}")
    video = VideoSource.open(args.source_video) if args.source_video else None
    session = AnnotationSession.load(args.project, video=video, allow_mismatch=args.allow_mismatch)
    stale = not args.no_stale
    options = {"masks": {"include_stale": stale}, "coco": {"include_stale": stale, "all_frames": args.all_frames},
               "csv": {"include_stale": stale},
               "video": {"include_stale": stale, "opacity": args.opacity, "codec": args.codec}}
    summaries = []
    for fmt, path in targets:
        if fmt == "video":
            bar = common.progress(total=len(session), desc="overlay video", unit="frame")
            options[fmt]["progress"] = lambda done, total: bar.update(done - bar.n)
            try:
                s = ex.export(session, fmt, path, **options[fmt])
            finally:
                bar.close()
        else:
            s = ex.export(session, fmt, path, **options[fmt])
        summaries.append(s)
        print(f"{fmt}: wrote {s['frames']} frames to {s['path']}", file=sys.stderr)
    common.write_json(args.json, {"project": str(args.project), "exports": summaries})
    return 0


main = common.entry(parser, _main)

if __name__ == "__main__":
    sys.exit(main())
