"""Loading and saving encoder weights.

Only `torch.load(weights_only=True)` is ever used: a checkpoint is data, never code.  What opens:

* ours: `{"format": "affinity-annotator.checkpoint", "version": 1, "model_spec": {...},
  "state_dict": {...}, ...}`; the spec comes from the file.  Inference checkpoints written by
  `save_inference_checkpoint` hold half-precision weights of the inference layers only (plus
  `"precision": "fp16"` and a model `"card"`); they are upcast to float32 on load;
* the published layouts of CRW, MAST, LIIR, UVC/ContrastCorr and STT (`importers.py`, research
  spec §3.4, §4.4, §6.10, §7.7, §8.5, §9.7), detected from their keys, unwrapped from
  `{'state_dict': ...}` / `{'model': ...}` containers and `module.` prefixes; `model=` overrides
  the spec the file suggests;
* a plain torchvision-style state dict (`{name: tensor}`), with `model=NAME` saying what it is.

Every key the encoder needs must be present with the right shape; keys of parts the spec does not
build (fc, layers after the output layer, heads) are ignored, and so is everything outside a
published layout's encoder (auto-encoders, queues, teachers); anything else is an error that lists
the offending keys under the file's own names, because a half-loaded encoder silently gives bad labels.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import atomic
from ..errors import CheckpointError, ConfigError
from . import importers
from .resnet import LAYERS
from .specs import MODEL_SPECS, Encoder, ModelSpec, build_encoder, build_trunk, get_spec

FORMAT = "affinity-annotator.checkpoint"
VERSION = 1
DEFAULT_MODEL = "crw-r18-s8"
_OUR_FIELDS = ("format", "version", "method", "model_spec", "state_dict", "config", "data", "step", "metrics")
_PRECISIONS = ("fp32", "fp16")
_LIST_MAX = 10


def default_checkpoint_path() -> Path:
    """resources/models/default.pt (bundled with the package; may be absent in a bare checkout).

    Never raises: when the `resources` package cannot be imported (an install without package
    data) the path next to the source tree is returned, and callers test `.exists()`.
    """
    try:
        import resources
        base = Path(resources.__file__).resolve().parent
    except (ImportError, TypeError):   # TypeError: a namespace package has __file__ None
        base = Path(__file__).resolve().parents[2] / "resources"
    return base / "models" / "default.pt"


# -- reading ---------------------------------------------------------------------------------

def _some(keys, n: int = _LIST_MAX) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys) - n} more)" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + more + "]"


def _torch_load(path: Path, map_location="cpu", mmap: bool = False) -> Any:
    if not path.exists():
        raise CheckpointError(path, "file not found")
    if not path.is_file():
        raise CheckpointError(path, "not a file")
    try:
        # CRW checkpoints carry their argparse.Namespace; that class only holds attributes.
        # mmap (load_encoder only, which copies what it needs and drops the rest): LIIR files hold a
        # memory-bank queue of up to ~0.5 GB that is never used, and mapping reads only the tensors
        # we copy.  Zip-format files only; legacy ones load whole.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True,
                              mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        found = set(re.findall(r"GLOBAL ([\w.]+)", msg))
        try:
            found |= set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # not a zip-format file: the message above is all we know
            pass
        if found:
            raise CheckpointError(path, "refused: contains pickled objects other than tensors "
                                        f"({', '.join(sorted(found))})") from None
        detail = msg.split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if "WeightsUnpickler" in msg else msg
        raise CheckpointError(path, f"not a readable torch checkpoint (the weights-only unpickler stopped: "
                                    f"{detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as exc:
        raise CheckpointError(path, f"not a readable torch checkpoint ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return f"a dict with keys {_some(map(str, obj.keys()))}"
    return f"a {type(obj).__name__}"


def _tensor_dict(sd: Any, path, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(sd, Mapping):
        raise CheckpointError(path, f"{what} is not a dict: found {_describe(sd)}")
    bad = [str(k) for k, v in sd.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        kinds = sorted({type(sd[k]).__name__ for k in sd if str(k) in bad})
        raise CheckpointError(path, f"not a plain state dict: found keys {_some(map(str, sd.keys()))}; "
                                    f"{len(bad)} entries are not tensors ({', '.join(kinds)}): {_some(bad)}")
    return dict(sd)


def _strip(sd: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in importers.strip_module(sd).items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def _ignorable(spec: ModelSpec, key: str) -> bool:
    """Keys of parts that the spec deliberately does not build."""
    top = key.split(".", 1)[0]
    if spec.arch in ("mast18", "liir18"):
        return False
    if top in ("fc", "avgpool", "selfsim_fc") or "head" in key:
        return True
    return top in LAYERS and LAYERS.index(top) > LAYERS.index(spec.out_layer)


def _load_into(encoder: Encoder, sd: dict[str, torch.Tensor], path,
               layout: "importers.Layout | None" = None, origin: "Mapping[str, str] | None" = None) -> None:
    """Check `sd` (our key names) against the trunk and load it; messages use the file's key names."""
    def named(k: str) -> str:
        if layout is None:
            return k
        return f"{k} (file: {origin[k] if origin and k in origin else layout.file_key(k)})"

    want = encoder.trunk.state_dict()
    missing = [k for k in want if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in want and not _ignorable(encoder.spec, k)]
    mismatched = [f"{named(k)} {tuple(sd[k].shape)} vs {tuple(want[k].shape)}" for k in want
                  if k in sd and sd[k].shape != want[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys {_some(map(named, missing))}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys {_some(map(named, unexpected))}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (file vs model) {_some(mismatched)}")
        what = f" read as {layout.title}" if layout is not None else ""
        raise CheckpointError(path, f"does not fit model {encoder.spec.name!r} ({encoder.spec.arch}, "
                                    f"up to {encoder.spec.out_layer}){what}: " + "; ".join(parts))
    bad = [k for k in want if k in sd and sd[k].is_floating_point() != want[k].is_floating_point()]
    if bad:
        raise CheckpointError(path, f"wrong tensor types (float vs integer) for {_some(map(named, bad))}")
    # Half/bfloat16 files (our inference checkpoints, or anyone's) are upcast: the engine computes
    # in float32 and picks its own reduced precision at extraction time.
    encoder.trunk.load_state_dict({k: (v.float() if v.is_floating_point() else v)
                                   for k, v in sd.items() if k in want}, strict=False)


def _resolve_model(model: "str | ModelSpec | None", fallback: "str | None", path, layout: str) -> ModelSpec:
    name = model if model is not None else fallback
    if name is None:
        raise CheckpointError(path, f"{layout} does not say which model it is; pass model=NAME "
                                    f"(known: {', '.join(MODEL_SPECS)})")
    try:
        return get_spec(name)
    except ConfigError as exc:
        raise CheckpointError(path, exc.reason) from None


def _load_ours(obj: Mapping, path, model) -> Encoder:
    if obj.get("version") != VERSION:
        raise CheckpointError(path, f"checkpoint format version {obj.get('version')!r} is not supported "
                                    f"(this engine reads version {VERSION})")
    missing = [f for f in _OUR_FIELDS if f not in obj]
    if missing:
        raise CheckpointError(path, f"incomplete checkpoint: missing fields {missing}")
    precision = obj.get("precision", "fp32")
    if precision not in _PRECISIONS:
        raise CheckpointError(path, f"unknown weight precision {precision!r} (known: {', '.join(_PRECISIONS)})")
    spec = ModelSpec.from_dict(obj["model_spec"], path)
    if model is not None:
        asked = _resolve_model(model, None, path, "")
        same = {**asked.to_dict(), "name": "", "description": ""} == {**spec.to_dict(), "name": "", "description": ""}
        if asked.name != spec.name and not same:
            raise CheckpointError(path, f"the checkpoint is a {spec.name!r} model, not {asked.name!r} "
                                        f"(leave out the model option to use the checkpoint's own)")
    sd = _tensor_dict(obj["state_dict"], path, "state_dict")
    encoder = build_encoder(spec)
    _load_into(encoder, sd, path)
    encoder.source = f"{FORMAT} v{VERSION} ({precision}), method {obj.get('method')!r}"
    return encoder


def load_encoder(checkpoint: "str | os.PathLike | None" = None, model: "str | ModelSpec | None" = None,
                 map_location="cpu") -> Encoder:
    """Build the encoder a checkpoint describes and load its weights; eval mode, on `map_location`.

    `model` names a registry spec: required for a plain state dict, optional otherwise (for our
    format it may not contradict the file; for a published layout it replaces the spec the file
    suggests, e.g. `stt-r18-s4` for a stride-4 STT file).  With neither argument the bundled
    default model is loaded.  `encoder.source` tells how the file was read.
    """
    if checkpoint is None:
        path = default_checkpoint_path()
        if not path.exists():
            raise CheckpointError(path, "no model is available: no checkpoint was given and the bundled "
                                        "default model is not installed (pass a checkpoint file)")
        if model is not None:
            want = _resolve_model(model, None, None, "")
            enc = _load(path, None, map_location, DEFAULT_MODEL)
            if enc.spec.name != want.name:
                raise CheckpointError(None, f"no weights for model {want.name!r}: the bundled default is "
                                            f"{enc.spec.name!r}; pass a checkpoint file")
            return enc
        return _load(path, None, map_location, DEFAULT_MODEL)
    return _load(Path(checkpoint), model, map_location, None)


_WRAPPERS = ("state_dict", "model")   # MMCV/UVC/MAST/LIIR use 'state_dict', CRW 'model'


def _unwrap(obj: Mapping, path) -> tuple[dict[str, torch.Tensor], Mapping]:
    """(the state dict, the outermost container holding metadata such as 'epoch' and 'args')."""
    def all_tensors(d: Mapping) -> bool:
        return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())

    container: Mapping = {} if all_tensors(obj) else obj
    where = "the file"
    for _ in range(3):        # {'state_dict': {'model': ...}} and the like
        if all_tensors(obj):
            break
        key = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj, where = obj[key], (f"{where}[{key!r}]" if where != "the file" else repr(key))
    return _tensor_dict(obj, path, where), container


def _dropped_note(dropped: Mapping[str, int]) -> str:
    if not dropped:
        return ""
    return "; dropped (not used at inference): " + ", ".join(f"{k} ({n})" for k, n in sorted(dropped.items()))


def _load_published(layout: "importers.Layout", sd: dict[str, torch.Tensor], container: Mapping, path,
                    model) -> Encoder:
    try:
        mapped, origin, dropped = importers.map_keys(layout, sd)
    except ValueError as exc:
        raise CheckpointError(path, f"{layout.title}: {exc}") from None
    if model is None:
        name, why = layout.default_model(sd, container)
    else:
        name, why = model, "model given"
    spec = _resolve_model(name, None, path, layout.title)
    pe = mapped.get("pos_embed1")
    if spec.arch == "liir18" and pe is not None and pe.ndim == 4 and pe.shape[2] == pe.shape[3] != spec.pos_embed:
        # LIIR's embedding is sized for its training resolution (spec §11b-33); take the file's.
        spec = dataclasses.replace(spec, pos_embed=int(pe.shape[2]))
    encoder = build_encoder(spec)
    _load_into(encoder, mapped, path, layout, origin)
    encoder.source = f"{layout.title} -> {spec.name} ({why}){_dropped_note(dropped)}"
    return encoder


def _load(path: Path, model, map_location, fallback) -> Encoder:
    obj = _torch_load(path, mmap=True)
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"not a dict: found {_describe(obj)}")
    if obj.get("format") == FORMAT:
        if obj.get("method") == "uvc_ae":
            raise CheckpointError(path, "is UVC's Lab colour auto-encoder (method uvc_ae), not a correspondence "
                                        "model; give it as `autoencoder` to a uvc or contrastcorr training config")
        encoder = _load_ours(obj, path, model)
    elif "format" in obj:
        raise CheckpointError(path, f"unknown checkpoint format {obj.get('format')!r}")
    else:
        sd, container = _unwrap(obj, path)
        sd = importers.strip_module(sd)
        found = importers.detect(sd)
        if len(found) > 1:
            raise CheckpointError(path, "keys of several published layouts at once ("
                                        + ", ".join(f"{lay.name}: {lay.signature}" for lay in found)
                                        + "); not a checkpoint this engine can read unambiguously")
        if found:
            encoder = _load_published(found[0], sd, container, path, model)
        else:
            if model is None and fallback is None:
                raise CheckpointError(path, f"keys {_some(sd.keys())} match none of the published layouts tried "
                                            f"[{importers.describe_layouts()}] nor ours ('format' field); "
                                            f"if it is a plain torchvision-style state dict, pass model=NAME "
                                            f"(known: {', '.join(MODEL_SPECS)})")
            spec = _resolve_model(model, fallback, path, "a plain state dict")
            encoder = build_encoder(spec)
            _load_into(encoder, _strip(sd, ("feature_extraction.", "encoder.model.")), path)
            encoder.source = f"plain state dict read as {spec.name}"
    return encoder.to(map_location).eval()


def read_checkpoint(path: "str | os.PathLike", map_location="cpu") -> dict:
    """The raw dict of a checkpoint in our format (metadata: method, step, metrics, config, data)."""
    path = Path(path)
    obj = _torch_load(path, map_location)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        raise CheckpointError(path, f"not an {FORMAT} file: found {_describe(obj)}")
    missing = [f for f in _OUR_FIELDS if f not in obj]
    if missing:
        raise CheckpointError(path, f"incomplete checkpoint: missing fields {missing}")
    return dict(obj)


# -- writing ---------------------------------------------------------------------------------

def _check_plain(value: Any, where: str) -> None:
    """Metadata must survive weights_only loading: JSON-like values and tensors only."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ConfigError(None, f"{where}: key {k!r} is not a string")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise ConfigError(None, f"{where} holds a {type(value).__name__}; checkpoints store only plain "
                            f"values (dict, list, str, number, bool, None, tensor)")


def save_checkpoint(path: "str | os.PathLike", encoder: Encoder, method: str, config: "dict | None" = None,
                    data: "dict | None" = None, step: int = 0, metrics: "dict | None" = None,
                    extra: "dict | None" = None) -> None:
    """Write our checkpoint format atomically; `load_encoder(path)` gives the same encoder back.

    `extra` adds further top-level fields (plain values and tensors only, no clash with the format's
    own fields): the trainer keeps its resume state there (`train_state`), so one file both opens in
    the engine and continues a run.  Readers that do not know a field ignore it.
    """
    obj = {
        "format": FORMAT, "version": VERSION, "method": str(method),
        "model_spec": encoder.spec.to_dict(),
        # CPU, contiguous and detached, so the file does not depend on where training ran.
        "state_dict": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in encoder.trunk.state_dict().items()},
        "config": dict(config or {}), "data": dict(data or {}), "step": int(step), "metrics": dict(metrics or {}),
    }
    for f in ("config", "data", "metrics"):
        _check_plain(obj[f], f)
    for k, v in (extra or {}).items():
        if not isinstance(k, str) or k in obj:
            raise ConfigError(None, f"extra checkpoint field {k!r} is not a string or clashes with the format's fields")
        _check_plain(v, k)
        obj[k] = v
    atomic.write_with(path, lambda tmp: torch.save(obj, tmp))


# Tensors whose fp16 rounding is not worth their few bytes: BN statistics enter as 1/sqrt(var + eps),
# and small variances (dead channels) lose most of their precision as fp16 subnormals.
_KEEP_FP32 = ("running_mean", "running_var")


def _half(key: str, t: torch.Tensor) -> torch.Tensor:
    t = t.detach().to("cpu", copy=True).contiguous()
    if not t.is_floating_point() or key.rsplit(".", 1)[-1] in _KEEP_FP32:
        return t.float() if t.is_floating_point() else t
    h = t.half()
    if not torch.isfinite(h).all() and torch.isfinite(t).all():
        return t.float()            # beyond fp16's range (|x| > 65504): keep exact rather than inf
    return h


def save_inference_checkpoint(encoder: Encoder, path: "str | os.PathLike", card: dict) -> None:
    """Write a shippable checkpoint: fp16 weights of only the layers inference uses, plus a model card.

    The layers kept are exactly those `build_trunk(encoder.spec)` builds, so a trunk that was
    trained with extra stages (e.g. CRW's layer4) loses them.  `card` is stored as given (plain
    JSON-like values) under "card"; its "method", "config", "data", "step" and "metrics" entries,
    when present, also fill the fields of the same names.  `load_encoder(path)` upcasts to float32.
    """
    if not isinstance(card, dict):
        raise ConfigError(None, f"card must be a dict, got {type(card).__name__}")
    _check_plain(card, "card")
    keep = build_trunk(encoder.spec).state_dict()
    have = encoder.trunk.state_dict()
    missing = [k for k in keep if k not in have]
    wrong = [k for k in keep if k in have and have[k].shape != keep[k].shape]
    if missing or wrong:
        raise ConfigError(None, f"the encoder's trunk does not match its spec {encoder.spec.name!r}: "
                                f"missing {_some(missing)}, wrong shapes {_some(wrong)}")
    obj = {
        "format": FORMAT, "version": VERSION, "method": str(card.get("method", encoder.spec.protocol)),
        "model_spec": encoder.spec.to_dict(),
        "state_dict": {k: _half(k, have[k]) for k in keep},
        "config": dict(card.get("config") or {}), "data": dict(card.get("data") or {}),
        "step": int(card.get("step") or 0), "metrics": dict(card.get("metrics") or {}),
        "precision": "fp16", "card": card,
    }
    atomic.write_with(path, lambda tmp: torch.save(obj, tmp))
