"""File > Export: the engine's exporters (engine.export), run in a background thread.

Each format asks for a destination, then runs off the GUI thread with progress and Cancel where the
exporter supports them (mask folders and the overlay video can take a while).  If engine.export is
not importable, the actions stay visible but disabled with the reason in their tooltip.
"""
from __future__ import annotations

import threading
import traceback
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog

from engine.errors import AffinityError, Cancelled
from engine.propagate import CancelToken

FORMATS = [  # (format id, menu text, kind of destination, file filter, default suffix)
    ("masks", "DAVIS palette PNGs (folder)…", "folder", "", ""),
    ("coco", "COCO JSON (RLE masks + keypoints)…", "file", "COCO JSON (*.json)", ".json"),
    ("csv", "Keypoint CSV…", "file", "CSV (*.csv)", ".csv"),
    ("video", "Overlay video (MP4)…", "file", "MP4 video (*.mp4)", ".mp4"),
]


def exporter():
    """engine.export, or None with the reason."""
    try:
        from engine import export
        return export, ""
    except ImportError as exc:
        return None, f"engine.export is not available ({exc})"


class ExportRunner(QObject):
    progress = Signal(int, int)
    done = Signal(str, dict)         # format, summary
    failed = Signal(str, str)        # title, message

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread = None
        self.cancel = CancelToken()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, session, fmt: str, path, **options) -> bool:
        module, why = exporter()
        if module is None:
            self.failed.emit("Export is not available", why)
            return False
        if self.running:
            self.failed.emit("Export", "an export is already running")
            return False
        self.cancel = CancelToken()
        if fmt in ("masks", "video"):
            options.setdefault("progress", lambda d, t: self.progress.emit(d, t))
            options.setdefault("cancel", self.cancel)

        def work():
            try:
                summary = module.export(session, fmt, path, **options)
                self.done.emit(fmt, dict(summary or {}))
            except Cancelled:
                self.failed.emit("Export cancelled", f"nothing was written to {path}")
            except AffinityError as exc:
                self.failed.emit("Export failed", str(exc))
            except Exception:   # a bug in an exporter is reported, not fatal
                self.failed.emit("Export failed", traceback.format_exc(limit=6))

        self._thread = threading.Thread(target=work, name=f"export-{fmt}", daemon=True)
        self._thread.start()
        return True

    def wait(self, timeout: "float | None" = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def ask_destination(parent, fmt: str, suggestion: Path) -> "str | None":
    _, text, kind, filt, suffix = next(f for f in FORMATS if f[0] == fmt)
    if kind == "folder":
        path = QFileDialog.getExistingDirectory(parent, "Export masks into folder", str(suggestion.parent))
        return str(Path(path) / f"{suggestion.name}-masks") if path else None
    path, _ = QFileDialog.getSaveFileName(parent, text.rstrip("…"), str(suggestion) + suffix, filt)
    return path or None
