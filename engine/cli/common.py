"""Shared pieces of the headless CLIs: model/propagation options, error handling, JSON output."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .. import atomic
from ..errors import AffinityError

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", help="named model spec (e.g. crw-r18-s8); with --checkpoint, the spec "
                                   "for a plain ResNet state dict")
    g.add_argument("--checkpoint", help="checkpoint file (ours, a torchvision-style state dict, or CRW's)")
    g.add_argument("--random-init", action="store_true",
                   help="use the model spec with seeded random weights (for demos/tests without a trained model)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def add_propagation_args(parser: argparse.ArgumentParser) -> None:
    from ..protocols import NAMES
    from ..propagate import PropagationParams
    d = PropagationParams()
    g = parser.add_argument_group("propagation (the model's protocol unless overridden; CRW by default)")
    g.add_argument("--protocol", choices=NAMES, default=None,
                   help="inference protocol (default: the one the model's spec names)")
    g.add_argument("--topk", type=int, default=None, help="top-k (protocol default; CRW 10)")
    g.add_argument("--context", type=int, default=None, help="short-term context frames (CRW 20)")
    g.add_argument("--radius", type=float, default=None, help="search radius in feature cells at scale 1 (CRW 12); "
                   "--scale s searches radius x s cells, the same reach in the image")
    g.add_argument("--temperature", type=float, default=None, help="scores are divided by it (CRW 0.05)")
    g.add_argument("--window", choices=["circle", "square", "none"], default=None,
                   help="short-term window: circle (dist < r), square (|dy|,|dx| <= r), none (global)")
    g.add_argument("--key-search", choices=["global", "window"], default=None, help="how the keyframe is searched")
    g.add_argument("--memory", choices=["soft", "hard"], default=None, help="labels kept for past frames")
    g.add_argument("--affinity", choices=["softmax", "mutual", "compact"], default=None,
                   help="softmax, ContrastCorr's mutual correlation, LIIR's compactness prior")
    g.add_argument("--decode", choices=["argmax", "minmax"], default=None, help="mask decoding")
    g.add_argument("--short-side", type=int, default=None, help="protocol test resolution (short side px, 0 = native)")
    g.add_argument("--precision", default=d.precision, choices=["auto", "fp32", "bf16", "fp16"])
    g.add_argument("--max-side", type=int, default=d.max_side, help="cap of the processing resolution's long side")
    g.add_argument("--scale", type=float, default=d.scale, help="processing scale (<1 for previews)")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The options every propagating CLI shares: --json, the model and the propagation parameters."""
    parser.add_argument("--json", help="write the results here (machine-readable)")
    add_model_args(parser)
    add_propagation_args(parser)


def entry(make_parser: Callable[[], argparse.ArgumentParser], body: Callable[[argparse.Namespace], int]):
    """A console-script main(argv=None) that parses, runs `body` and maps errors to exit codes."""
    def main(argv=None) -> int:
        args = make_parser().parse_args(argv)
        return run(lambda: body(args))
    return main


def params_from_args(args):
    from ..propagate import PropagationParams
    g = lambda name: getattr(args, name, None)  # noqa: E731  (parsers built elsewhere may lack a flag)
    return PropagationParams(topk=g("topk"), context=g("context"), radius=g("radius"), temperature=g("temperature"),
                             protocol=g("protocol"), window=g("window"), key_search=g("key_search"),
                             memory=g("memory"), affinity=g("affinity"), decode=g("decode"),
                             short_side=g("short_side"), precision=args.precision, max_side=args.max_side,
                             scale=args.scale).validate()


def encoder_from_args(args):
    from ..models import load_encoder, random_encoder
    if args.random_init:
        return random_encoder(args.model or "crw-r18-s8")
    return load_encoder(checkpoint=args.checkpoint, model=args.model)


def write_json(path: "str | None", obj) -> None:
    if path:
        atomic.write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def progress(iterable=None, **kw):
    """tqdm on a terminal, silent otherwise (logs and CI stay clean)."""
    from tqdm import tqdm
    return tqdm(iterable, disable=not sys.stderr.isatty(), dynamic_ncols=True, **kw)


def run(main: Callable[[], int]) -> int:
    """Run a CLI body: bad input -> message on stderr and exit 2; Ctrl-C -> 130."""
    try:
        return main() or EXIT_OK
    except AffinityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
