"""Persistent preferences of the app (QSettings): recent files, model/device, propagation options.

Project-specific choices live in the project (session settings); these are the user's defaults
across projects.  Every value has a typed accessor so a corrupt or foreign value in the settings
store falls back to the default instead of crashing the app.
"""
from __future__ import annotations

from PySide6.QtCore import QSettings

MAX_RECENT = 10

DEFAULTS = {
    "model/checkpoint": "",          # "" = the bundled default model (random weights until it exists)
    "model/device": "auto",          # auto | cpu | cuda
    "propagation/scale": 0.0,        # 0 = automatic: 1.0 on CUDA, 0.5 on CPU (interactive speed)
    # 0 (context: -1) = the model's own protocol (CRW: 10, 20, 12, 0.05; MAST, STT, UVC differ).
    "propagation/topk": 0,
    "propagation/context": -1,
    "propagation/radius": 0.0,
    "propagation/temperature": 0.0,
    "propagation/auto_repropagate": False,
    "propagation/follow": True,      # the canvas follows the frame being propagated
    "propagation/extent": "next_keyframe",   # next_keyframe | end
    "adapt/seconds": 0.0,            # 0 = automatic: 60 s on CPU, 15 s on a GPU
    "adapt/auto": False,             # adapt the model to the video before its first propagation
    "timeline/low_confidence": 0.5,
    "autosave/interval_s": 60,
    "view/opacity": 0.5,
}


class AppSettings:
    def __init__(self, store: "QSettings | None" = None):
        self.store = store if store is not None else QSettings("AffinityAnnotator", "Affinity Annotator")

    def get(self, key: str):
        default = DEFAULTS[key]
        value = self.store.value(key, default)
        try:
            if isinstance(default, bool):
                return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            return type(default)(value)
        except (TypeError, ValueError):
            return default

    def set(self, key: str, value) -> None:
        if key not in DEFAULTS:
            raise KeyError(key)
        self.store.setValue(key, value)

    # -- recent files ----------------------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.store.value("recent/files", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])][:MAX_RECENT]

    def add_recent(self, path: str) -> None:
        files = [path] + [p for p in self.recent_files() if p != path]
        self.store.setValue("recent/files", files[:MAX_RECENT])

    def remove_recent(self, path: str) -> None:
        self.store.setValue("recent/files", [p for p in self.recent_files() if p != path])

    def sync(self) -> None:
        self.store.sync()
