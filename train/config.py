"""Training configs: JSON files in train/configs/, `extends` for inheritance, key=value overrides.

`--config NAME_OR_FILE`: a path to a .json file, or a name looked up as `<method>-<name>.json` then
`<name>.json` in train/configs/ (so `--method crw --config smoke` is `crw-smoke.json`); no --config
means `<method>.json`, the paper defaults.  Overrides use dotted keys (`loss.temperature=0.07`);
values parse as JSON when they can (numbers, lists, true/false/null), else stay strings, and a key
that the config does not have is an error (typos must not pass silently).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterable

from engine.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# Keys the trainer reads itself.  `loss`, `augment`, `schedule` and `adapt` are read by the method,
# the pipeline and the schedule (the pipeline rejects unknown arguments; stage entries are free-form).
TOP_LEVEL = {"method", "model", "seed", "autoencoder", "teacher", "train_layer", "data", "augment", "loss",
             "optim", "schedule", "train", "eval", "adapt", "config_file"}
SECTION_KEYS = {
    "train": {"batch_size", "accumulate", "epochs", "max_steps", "max_seconds", "precision", "log_every",
              "ckpt_every", "keep_checkpoints", "save_initial", "eval_every", "threads"},
    "data": {"clip_len", "fps", "clips_per_video", "frame_folder_fps", "num_workers"},
    "optim": {"name", "lr", "weight_decay", "betas", "grad_clip"},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def find_config(name: str, method: str) -> Path:
    p = Path(name)
    if p.suffix == ".json" or p.exists():
        if not p.is_file():
            raise ConfigError(p, "config file not found")
        return p
    for cand in (CONFIG_DIR / f"{method}-{name}.json", CONFIG_DIR / f"{name}.json"):
        if cand.is_file():
            return cand
    known = sorted(f.stem for f in CONFIG_DIR.glob("*.json"))
    raise ConfigError(None, f"no config {name!r} for method {method!r} (known: {', '.join(known)})")


def _read(path: Path, method: str, seen: tuple = ()) -> dict:
    if path in seen:
        raise ConfigError(path, "config `extends` loop")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(path, f"not a readable JSON config ({exc})") from None
    if not isinstance(cfg, dict):
        raise ConfigError(path, "config must be a JSON object")
    parent = cfg.pop("extends", None)
    cfg.pop("_comment", None)
    if parent:
        cfg = _merge(_read(find_config(parent, method), method, seen + (path,)), cfg)
    return cfg


def check_keys(cfg: dict, path: "Path | None" = None) -> None:
    """A misspelt key in a config file must not be ignored silently (a `trian` section would train
    with every default)."""
    from engine.propagate import PropagationParams
    allowed = dict(SECTION_KEYS, eval=set(PropagationParams.__dataclass_fields__) | {"sequences", "frames"})
    bad = sorted(set(cfg) - TOP_LEVEL)
    for sec, keys in allowed.items():
        if isinstance(cfg.get(sec), dict):
            bad += [f"{sec}.{k}" for k in sorted(set(cfg[sec]) - keys)]
    if bad:
        raise ConfigError(path, f"unknown key(s) {', '.join(bad)}")


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(None, f"override {item!r} is not key=value")
    key, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        keys, value = parse_override(item)
        node = cfg
        for i, k in enumerate(keys[:-1]):
            if not isinstance(node.get(k), dict):
                raise ConfigError(None, f"override {item!r}: unknown key {'.'.join(keys[:i + 1])} (not a config section)")
            node = node[k]
        # A key the file leaves at its default (e.g. train.max_seconds) may be set when the trainer knows it.
        known = keys[-1] in (SECTION_KEYS.get(keys[0], ()) if len(keys) == 2 else TOP_LEVEL if len(keys) == 1 else ())
        if keys[-1] not in node and not known:
            raise ConfigError(None, f"override {item!r}: unknown key {'.'.join(keys)}")
        node[keys[-1]] = value
    return cfg


def load_config(method: str, name: "str | None" = None, overrides: Iterable[str] = ()) -> dict:
    path = find_config(name or method, method)
    cfg = _read(path, method)
    check_keys(cfg, path)
    cfg = apply_overrides(cfg, overrides)
    cfg.setdefault("method", method)
    if cfg["method"] != method:
        raise ConfigError(path, f"config is for method {cfg['method']!r}, not {method!r}")
    cfg["config_file"] = path.name
    return cfg
