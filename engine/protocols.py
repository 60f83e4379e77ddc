"""Inference protocols of the correspondence methods, as options of the one Propagator.

A `Protocol` says how a target frame's labels are computed from its references (research spec
§3.3 CRW, §4.3 MAST, §6.9 UVC, §7.6 ContrastCorr, §8.3-8.4 LIIR, §9.6 STT, §11b-1..6):

- which earlier frames are references (`references`, `context`, `key_copies`): "recent" = the
  keyframe plus the last `context` frames, the short-term memory starting as `key_copies` copies of
  the keyframe (CRW pads with `context` copies, STT's "first + preceding" is one copy, UVC's queue
  starts empty); "mast" = frames {0, 5, t-1, t-3, t-5} counted from the keyframe;
- how each is searched: the first reference (the long-term keyframe) globally or within the window
  (`key_search`), the others within a circle (dist < radius) or a square (|dy|, |dx| <= radius)
  window, or all globally (`window="none"`);
- how scores become weights: `aggregate="joint"` = top-k over all references' candidates jointly,
  softmax over the k scores / temperature (topk 0: one softmax over every windowed candidate, MAST);
  `"per_reference"` = softmax / temperature over each whole reference, its top-k kept without
  renormalising, the references' predictions averaged (UVC); `affinity` = "softmax" (plain),
  "mutual" (ContrastCorr's mutual-correlation re-weighting of the scores) or "compact" (LIIR's
  top-2 Gaussian compactness prior replacing confident rows after the softmax);
- what a finished frame leaves in memory (`memory`: "soft" predictions or "hard" one-hot argmax),
  how masks are sampled onto the grid (`label_sampling`) and decoded (`decode`), and at which
  resolution frames are processed (`short_side`, `size_multiple`).

`resolve(spec, params)` picks the protocol the encoder's spec names (with the spec's own hint
values), then applies every field the user set in PropagationParams.  CRW is the default.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

from .errors import ConfigError

NAMES = ("crw", "mast", "liir", "stt", "uvc", "contrastcorr")
LONG_TERM_STEP = 5          # MAST/LIIR's second long-term reference (frame 5 after the keyframe)


@dataclass(frozen=True)
class Protocol:
    name: str = "crw"
    references: str = "recent"      # "recent" | "mast"
    context: int = 20               # "recent": short-term frames besides the keyframe
    key_copies: int = -1            # "recent": keyframe copies the short-term memory starts with; -1 = context
    key_search: str = "global"      # the long-term keyframe: "global" | "window"
    window: str = "circle"          # short-term search: "circle" (dist < radius) | "square" (|d| <= radius) | "none"
    radius: float = 12.0            # feature cells
    border: str = "mask"            # window cells outside the grid: "mask" (excluded) | "zero" (score 0, no label; MAST)
    aggregate: str = "joint"        # "joint" | "per_reference"
    topk: int = 10                  # 0 = no top-k (one softmax over all candidates)
    temperature: float = 0.05       # scores are divided by it (1 = raw dot products)
    affinity: str = "softmax"       # "softmax" | "mutual" | "compact"
    compact_sigma: float = 1.0      # LIIR prior: Gaussian FWHM in cells
    compact_threshold: float = 0.1  # LIIR prior replaces a row when its top weight exceeds this
    memory: str = "soft"            # "soft" | "hard"
    label_sampling: str = "bilinear"  # masks onto the grid: "bilinear" (CRW) | "nearest" (top-left pixel of a cell)
    decode: str = "argmax"          # "argmax" | "minmax" (per-channel min-max before argmax)
    roi_gap: int = 0                # MAST: references more than this many frames back are searched around a
                                    # soft-argmax offset from a dilated coarse window (0 = off)
    short_side: int = 0             # processing resolution: short side in pixels, 0 = native (then max_side/scale)
    size_multiple: int = 1          # with short_side: the long side is floored to a multiple of it (UVC)

    def validate(self) -> "Protocol":
        choices = {"references": ("recent", "mast"), "key_search": ("global", "window"),
                   "window": ("circle", "square", "none"), "border": ("mask", "zero"),
                   "aggregate": ("joint", "per_reference"), "affinity": ("softmax", "mutual", "compact"),
                   "memory": ("soft", "hard"), "label_sampling": ("bilinear", "nearest"),
                   "decode": ("argmax", "minmax")}
        bad = [f"{k} must be one of {v}, got {getattr(self, k)!r}" for k, v in choices.items()
               if getattr(self, k) not in v]
        checks = [
            (self.context >= 0, "context must be >= 0"),
            (self.key_copies >= -1, "key_copies must be >= -1"),
            (self.topk >= 0, "topk must be >= 0"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.window == "none" or self.radius > 0, "a window needs radius > 0"),
            (self.short_side >= 0 and self.size_multiple >= 1, "short_side >= 0 and size_multiple >= 1"),
            (self.compact_sigma > 0, "compact_sigma must be > 0"),
            # UVC searches every reference globally; its local variant is unused (spec §7.6).
            (self.aggregate != "per_reference" or self.window == "none",
             "per_reference aggregation searches whole references (window 'none')"),
            (self.aggregate != "per_reference" or self.topk >= 1, "per_reference aggregation needs topk >= 1"),
            (self.affinity != "mutual" or self.aggregate == "per_reference",
             "the mutual-correlation affinity is defined for whole references (aggregate 'per_reference')"),
            (self.affinity != "compact" or (self.aggregate == "joint" and self.topk == 0),
             "the compactness prior re-weights the full window softmax (aggregate 'joint', topk 0)"),
            (not (self.aggregate == "joint" and self.topk == 0)
             or (self.window != "none" and self.key_search == "window"),
             "topk 0 (a softmax over every candidate) needs windowed search of every reference"),
            (self.window != "none" or self.key_search == "global", "window 'none' means global search"),
            (self.roi_gap >= 0, "roi_gap must be >= 0"),
            (self.roi_gap == 0 or _roi_applies(self),
             "the long-term ROI search (roi_gap > 0) is MAST's: square windows, one softmax, no prior"),
        ]
        bad += [msg for ok, msg in checks if not ok]
        if bad:
            raise ConfigError(None, f"invalid propagation protocol {self.name!r}: " + "; ".join(bad))
        return self

    @property
    def copies(self) -> int:
        return self.context if self.key_copies < 0 else self.key_copies


PROTOCOLS: dict[str, Protocol] = {
    # CRW §3.3: keyframe global + 20 short-term frames (padded with keyframe copies), circle r 12.
    "crw": Protocol(),
    # MAST §4.3: references {0, 5, t-1, t-3, t-5}, square window R 12 on every reference, one softmax
    # over all windows of raw dot products, zero-scored border cells, hard one-hot memory sampled at
    # the top-left pixel of each cell; references > 15 frames back through the ROI search.
    "mast": Protocol("mast", references="mast", context=0, key_copies=0, key_search="window", window="square",
                     radius=12.0, border="zero", topk=0, temperature=1.0, memory="hard",
                     label_sampling="nearest", roi_gap=15),
    # LIIR §8.3-8.4: MAST's protocol with R 14 and the compactness prior (no ROI search, as LIIR).
    "liir": Protocol("liir", references="mast", context=0, key_copies=0, key_search="window", window="square",
                     radius=14.0, border="zero", topk=0, temperature=1.0, affinity="compact", memory="hard",
                     label_sampling="nearest"),
    # STT §9.6: frame 0 + 20 preceding frames (frame 0 twice for t <= 20), square window on every
    # key incl. frame 0, joint top-10, softmax / 0.07, soft memory, min-max decoding, short side 480.
    "stt": Protocol("stt", context=20, key_copies=1, key_search="window", window="square", radius=12.0,
                    topk=10, temperature=0.07, label_sampling="nearest", decode="minmax", short_side=480),
    # UVC §6.9: frame 0 + 7 most recent predictions, each globally: softmax (tau 1 = raw scores),
    # top-5 kept unrenormalised, predictions averaged; soft memory; 480p, long side floored to 64.
    "uvc": Protocol("uvc", context=7, key_copies=0, window="none", aggregate="per_reference", topk=5,
                    temperature=1.0, label_sampling="nearest", decode="minmax", short_side=480, size_multiple=64),
    # ContrastCorr §7.6: UVC's driver with the mutual-correlation affinity, at 560p.
    "contrastcorr": Protocol("contrastcorr", context=7, key_copies=0, window="none", aggregate="per_reference",
                             topk=5, temperature=1.0, affinity="mutual", label_sampling="nearest",
                             decode="minmax", short_side=560, size_multiple=64),
}
FIELDS = tuple(f.name for f in dataclasses.fields(Protocol) if f.name != "name")


def get(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(None, f"unknown protocol {name!r} (known: {', '.join(NAMES)})") from None


def roi_dilation(gap: int, roi_gap: int) -> int:
    """MAST's coarse-window dilation for a reference `gap` frames back: min(4, gap // 15 + 1)."""
    return min(4, gap // roi_gap + 1)


def spec_protocol_name(spec) -> str:
    """The protocol a model spec is meant for.  Specs name four families (crw, mast, uvc, stt);
    LIIR is MAST's family with the compactness prior, ContrastCorr UVC's with the mutual affinity."""
    family = getattr(spec, "protocol", "crw") or "crw"
    if family == "mast" and getattr(spec, "compact_prior", False):
        return "liir"
    if family == "uvc" and getattr(spec, "affinity", "softmax") == "mutual":
        return "contrastcorr"
    return family if family in PROTOCOLS else "crw"


def from_spec(spec) -> Protocol:
    """The spec's protocol with the spec's own hint values (radius, top-k, resolution, ...)."""
    proto = get(spec_protocol_name(spec))
    hints = {}
    if hasattr(spec, "protocol_hints"):
        h = spec.protocol_hints()
        hints = {"topk": h["topk"], "radius": float(h["radius"]), "temperature": float(h["temperature"]),
                 "decode": h["decode"], "short_side": h["short_side"], "memory": "soft" if h["soft_memory"] else "hard"}
        if proto.references == "recent":
            hints["context"] = h["context"]
        if h["window"] != "none":
            hints["window"] = h["window"]
        if proto.aggregate == "per_reference":
            hints["size_multiple"] = h["size_multiple"]   # LIIR's multiple of 4 is padding: our grid already
    return replace(proto, **hints).validate()


def resolve(spec, params) -> Protocol:
    """Protocol for an encoder's spec and the user's PropagationParams: `params.protocol` (else the
    spec's), then every protocol field the params set (not None) overrides it; a window radius is
    scaled with `params.scale` (it is defined at scale 1)."""
    name = getattr(params, "protocol", None)
    if name is None or name == spec_protocol_name(spec):
        proto = from_spec(spec)
    else:
        proto = get(name)
    over = {f: getattr(params, f) for f in FIELDS if getattr(params, f, None) is not None}
    if getattr(params, "pad_context", None) is not None:
        over.setdefault("key_copies", -1 if params.pad_context else 0)
    proto = replace(proto, **over)
    if "roi_gap" not in over and proto.roi_gap and not _roi_applies(proto):
        proto = replace(proto, roi_gap=0)   # an override left MAST's one-softmax scheme: no ROI search
    scale = getattr(params, "scale", 1.0)
    if scale < 1 and proto.window != "none":
        # The radius is defined at scale 1; a preview at scale s has s times fewer cells per image side,
        # so the same reach in the image is radius * s cells.  Keeping the cell count instead doubled the
        # reach at 0.5: slower (2.9 vs 4.2 frames/s) and worse (tune-split J&F 0.541 vs 0.551 for the
        # default model; docs/models/tuning.md).
        proto = replace(proto, radius=max(1.0, proto.radius * scale))
    return proto.validate()


def _roi_applies(p: Protocol) -> bool:
    return p.aggregate == "joint" and p.topk == 0 and p.affinity == "softmax" and p.window == "square"


def reference_steps(proto: Protocol, step: int) -> list[int]:
    """References of the target `step` frames after the keyframe (step >= 1), in slot order, as
    steps from the keyframe; the first is the long-term keyframe, repeats are counted copies.

    recent: [0] + the last `context` steps, where steps before the keyframe are keyframe copies
    (only `copies` of them exist: CRW pads with `context`, STT with 1, UVC with none).
    mast:   {0} U {5 if 5 <= step-1} U {step-1, step-3, step-5 that are > 0}, sorted (spec §4.3).
    """
    if step < 1:
        raise ConfigError(None, f"reference steps exist for targets after the keyframe, got step {step}")
    if proto.references == "mast":
        refs = {0} | ({LONG_TERM_STEP} if LONG_TERM_STEP <= step - 1 else set())
        refs |= {step - d for d in (1, 3, 5) if step - d > 0}
        return sorted(refs)
    # The short-term memory is the padded sequence: steps 1-copies .. 0 are the keyframe's copies.
    short = [max(0, s) for s in range(step - proto.context, step) if s >= 1 - proto.copies]
    return [0] + short


def retained_steps(proto: Protocol, step: int) -> set[int]:
    """Steps (<= step) that a later target may still reference: what the memory keeps."""
    keep: set[int] = set()
    for later in range(step + 1, step + 2 + max(proto.context, 2 * LONG_TERM_STEP)):
        keep |= {s for s in reference_steps(proto, later) if s <= step}
        if proto.references == "recent":
            break   # later targets' references only move forward
    return keep


def processing_size(w: int, h: int, proto: Protocol, scale: float = 1.0) -> tuple[int, int]:
    """(w', h') for a protocol with a test resolution: short side = short_side, the long side scaled
    proportionally and floored to size_multiple (UVC/ContrastCorr §6.9; STT keeps the aspect), then
    times `scale` for previews."""
    short, long_ = (h, w) if h <= w else (w, h)
    s_new = proto.short_side
    l_new = int(long_ * s_new / short)
    if proto.size_multiple > 1:
        l_new = max(proto.size_multiple, l_new // proto.size_multiple * proto.size_multiple)
    if scale != 1.0:
        s_new, l_new = max(1, int(s_new * scale + 0.5)), max(1, int(l_new * scale + 0.5))
    return (l_new, s_new) if h <= w else (s_new, l_new)
