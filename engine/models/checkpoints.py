"""Loading and saving encoder weights.

Only `torch.load(weights_only=True)` is ever used: a checkpoint is data, never code.  Three layouts
open (research spec §1.1 loading rules, §3.4):

* ours: `{"format": "affinity-annotator.checkpoint", "version": 1, "model_spec": {...},
  "state_dict": {...}, ...}`; the spec comes from the file;
* a plain torchvision-style state dict (`{name: tensor}`), with `model=NAME` saying what it is;
* CRW's `train.py` checkpoint `{"model": {"encoder.model.<key>": ...}, "args": Namespace, ...}`.

Every key the encoder needs must be present with the right shape; keys of parts the spec does not
build (fc, layers after the output layer, CRW's `selfsim_fc`/head) are ignored; anything else is an
error that lists the offending keys, because a half-loaded encoder silently gives bad labels.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import atomic
from ..errors import CheckpointError, ConfigError
from .resnet import LAYERS
from .specs import Encoder, ModelSpec, build_encoder, get_spec

FORMAT = "affinity-annotator.checkpoint"
VERSION = 1
DEFAULT_MODEL = "crw-r18-s8"
_OUR_FIELDS = ("format", "version", "method", "model_spec", "state_dict", "config", "data", "step", "metrics")
_LIST_MAX = 10


def default_checkpoint_path() -> Path:
    """resources/models/default.pt (bundled with the package; may be absent in a bare checkout)."""
    import resources
    return Path(resources.__file__).resolve().parent / "models" / "default.pt"


# -- reading ---------------------------------------------------------------------------------

def _some(keys, n: int = _LIST_MAX) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys) - n} more)" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + more + "]"


def _torch_load(path: Path, map_location) -> Any:
    if not path.exists():
        raise CheckpointError(path, "file not found")
    if not path.is_file():
        raise CheckpointError(path, "not a file")
    try:
        # CRW checkpoints carry their argparse.Namespace; that class only holds attributes.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
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
    for k, v in sd.items():
        while k.startswith("module."):     # DataParallel / DDP wrappers, possibly nested
            k = k[len("module."):]
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
                break
        out[k] = v
    return out


def _is_crw(obj: Mapping) -> bool:
    m = obj.get("model")
    return isinstance(m, Mapping) and any(isinstance(k, str) and k.replace("module.", "").startswith("encoder.model.")
                                          for k in m)


def _crw_model_name(args: Any) -> "str | None":
    # train.py records which encoder it built; map it onto our registry when we know it.
    kind = getattr(args, "model_type", None)
    return {"scratch": "crw-r18-s8", "imagenet18": "imagenet-r18-s8", "imagenet50": "crw-r50-s8",
            "moco50": "crw-r50-s8"}.get(kind)


def _ignorable(spec: ModelSpec, key: str) -> bool:
    """Keys of parts that the spec deliberately does not build."""
    top = key.split(".", 1)[0]
    if spec.arch == "mast18":
        return False
    if top in ("fc", "avgpool", "selfsim_fc") or "head" in key:
        return True
    return top in LAYERS and LAYERS.index(top) > LAYERS.index(spec.out_layer)


def _load_into(encoder: Encoder, sd: dict[str, torch.Tensor], path) -> None:
    want = encoder.trunk.state_dict()
    missing = [k for k in want if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in want and not _ignorable(encoder.spec, k)]
    mismatched = [f"{k} {tuple(sd[k].shape)} vs {tuple(want[k].shape)}" for k in want
                  if k in sd and sd[k].shape != want[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys {_some(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys {_some(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (file vs model) {_some(mismatched)}")
        raise CheckpointError(path, f"does not fit model {encoder.spec.name!r} ({encoder.spec.arch}, "
                                    f"up to {encoder.spec.out_layer}): " + "; ".join(parts))
    bad = [k for k in want if k in sd and sd[k].is_floating_point() != want[k].is_floating_point()]
    if bad:
        raise CheckpointError(path, f"wrong tensor types (float vs integer) for {_some(bad)}")
    encoder.trunk.load_state_dict({k: v for k, v in sd.items() if k in want}, strict=False)


def _resolve_model(model: "str | ModelSpec | None", fallback: "str | None", path, layout: str) -> ModelSpec:
    name = model if model is not None else fallback
    if name is None:
        from .specs import MODEL_SPECS
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
    return encoder


def load_encoder(checkpoint: "str | os.PathLike | None" = None, model: "str | ModelSpec | None" = None,
                 map_location="cpu") -> Encoder:
    """Build the encoder a checkpoint describes and load its weights; eval mode, on `map_location`.

    `model` names a registry spec: required for a plain state dict, optional otherwise (it may not
    contradict the file).  With neither argument the bundled default model is loaded.
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


def _load(path: Path, model, map_location, fallback) -> Encoder:
    obj = _torch_load(path, map_location)
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"not a dict: found {_describe(obj)}")
    if obj.get("format") == FORMAT:
        encoder = _load_ours(obj, path, model)
    elif _is_crw(obj):
        spec = _resolve_model(model, _crw_model_name(obj.get("args")) or DEFAULT_MODEL, path, "")
        sd = _tensor_dict(obj["model"], path, "'model'")
        sd = _strip(sd, ("encoder.model.",))
        # CRW test.py renames these for an older padded-conv layout (spec §3.4); harmless otherwise.
        sd = {k.replace("conv1.1.weight", "conv1.weight").replace("conv2.1.weight", "conv2.weight"): v
              for k, v in sd.items()}
        encoder = build_encoder(spec)
        _load_into(encoder, sd, path)
    elif "format" in obj:
        raise CheckpointError(path, f"unknown checkpoint format {obj.get('format')!r}")
    else:
        if isinstance(obj.get("state_dict"), Mapping):      # {'state_dict': ..., 'epoch': ...} (MAST et al.)
            sd = _tensor_dict(obj["state_dict"], path, "'state_dict'")
        else:
            sd = _tensor_dict(obj, path, "the file")
        spec = _resolve_model(model, fallback, path, "a plain state dict")
        sd = _strip(sd, ("feature_extraction.", "encoder.model."))
        encoder = build_encoder(spec)
        _load_into(encoder, sd, path)
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
                    data: "dict | None" = None, step: int = 0, metrics: "dict | None" = None) -> None:
    """Write our checkpoint format atomically; `load_encoder(path)` gives the same encoder back."""
    obj = {
        "format": FORMAT, "version": VERSION, "method": str(method),
        "model_spec": encoder.spec.to_dict(),
        # CPU, contiguous and detached, so the file does not depend on where training ran.
        "state_dict": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in encoder.trunk.state_dict().items()},
        "config": dict(config or {}), "data": dict(data or {}), "step": int(step), "metrics": dict(metrics or {}),
    }
    for f in ("config", "data", "metrics"):
        _check_plain(obj[f], f)
    atomic.write_with(path, lambda tmp: torch.save(obj, tmp))
