"""Shortcuts as data: `resources/keymap.json`, overridden by the user's own keymap file.

The bundled file maps action ids ("file.save", "nav.next", ...) to lists of key sequences in Qt's
portable notation.  A user file (the first that exists of $AFFINITY_KEYMAP and
`<config folder>/keymap.json`) replaces the sequences of the ids it names; an empty list removes a
shortcut.  Unknown ids in the user file are reported, not silently ignored, so a typo is visible.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "resources" / "keymap.json"


def user_keymap_path() -> Path:
    env = os.environ.get("AFFINITY_KEYMAP")
    if env:
        return Path(env)
    from PySide6.QtCore import QStandardPaths
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppConfigLocation)) / "keymap.json"


def _read(path: Path) -> dict[str, list[str]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError("the file must hold a JSON object {action id: [key sequences]}")
    out = {}
    for key, value in doc.items():
        if key.startswith("_"):
            continue
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{key!r} must map to a list of key sequences, got {value!r}")
        out[key] = list(value)
    return out


class Keymap:
    """action id -> key sequences; `problems` lists what was wrong with the user's file."""

    def __init__(self, bundled: Path = BUNDLED, user: "Path | None" = None):
        self.bindings = _read(bundled)
        self.problems: list[str] = []
        self.user_path = user_keymap_path() if user is None else user
        if self.user_path.is_file():
            try:
                overrides = _read(self.user_path)
            except (OSError, ValueError) as exc:
                self.problems.append(f"{self.user_path}: {exc}")
                overrides = {}
            for key, seqs in overrides.items():
                if key not in self.bindings:
                    self.problems.append(f"{self.user_path}: unknown action {key!r}")
                else:
                    self.bindings[key] = seqs

    def sequences(self, action_id: str) -> list[str]:
        return list(self.bindings.get(action_id, []))

    def conflicts(self) -> list[tuple[str, list[str]]]:
        """Key sequences bound to more than one action (shown in the shortcuts dialog)."""
        seen: dict[str, list[str]] = {}
        for action, seqs in self.bindings.items():
            for s in seqs:
                seen.setdefault(s.lower(), []).append(action)
        return [(s, acts) for s, acts in seen.items() if len(acts) > 1]
