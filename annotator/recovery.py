"""Background autosave and crash recovery.

Every open document is listed in `<app data>/recovery/open.json` with where its autosave goes:
the project folder's `.autosave/` once it has one, else a private folder under `recovery/`.  The
autosaver writes there on a timer, in a background thread (the engine snapshots the session under
its lock, then encodes PNGs without it, so propagation and painting go on).  A clean close removes
the entry and the autosave; an entry still listed at the next start, whose process is gone and
whose autosave exists, is what a crash left behind, and the app offers to recover it.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, QTimer, Signal

from engine import atomic
from engine.session import AnnotationSession


def default_root() -> Path:
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "recovery"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RecoveryRegistry:
    def __init__(self, root: "Path | None" = None):
        self.root = Path(root) if root else default_root()
        self.file = self.root / "open.json"

    def _read(self) -> dict:
        try:
            doc = json.loads(self.file.read_text(encoding="utf-8"))
            return doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, entries: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.file, json.dumps(entries, indent=1))

    def autosave_root(self, doc) -> Path:
        if doc.project_dir is not None:
            return Path(doc.project_dir)
        key = hashlib.sha1(f"{os.path.abspath(doc.video.path)}|{os.getpid()}|{id(doc)}".encode()).hexdigest()[:16]
        return self.root / key

    def register(self, doc) -> str:
        entries = self._read()
        key = f"{os.getpid()}-{id(doc)}"
        entries[key] = {"pid": os.getpid(), "video": os.path.abspath(doc.video.path),
                        "project": str(doc.project_dir) if doc.project_dir else None,
                        "autosave_root": str(self.autosave_root(doc)), "opened": time.time()}
        self._write(entries)
        return key

    def update(self, key: str, doc) -> None:
        entries = self._read()
        if key in entries:
            old = Path(entries[key]["autosave_root"])
            entries[key]["project"] = str(doc.project_dir) if doc.project_dir else None
            entries[key]["autosave_root"] = str(self.autosave_root(doc))
            self._write(entries)
            if old != self.autosave_root(doc) and old.parent == self.root:
                AnnotationSession.discard_autosave(old)

    def unregister(self, key: str, discard: bool = True) -> None:
        entries = self._read()
        entry = entries.pop(key, None)
        self._write(entries)
        if entry and discard:
            root = Path(entry["autosave_root"])
            AnnotationSession.discard_autosave(root)
            if root.parent == self.root:
                try:
                    root.rmdir()
                except OSError:
                    pass

    def pending(self) -> list[dict]:
        """Autosaves left by processes that ended without closing their document."""
        out = []
        for key, e in self._read().items():
            try:
                if not _alive(int(e["pid"])) and AnnotationSession.has_autosave(e["autosave_root"]):
                    out.append(dict(e, key=key))
            except (KeyError, TypeError, ValueError):
                continue
        return sorted(out, key=lambda e: -float(e.get("opened", 0)))

    def forget(self, key: str) -> None:
        self.unregister(key, discard=True)

    def take(self, key: str) -> None:
        """The entry was recovered; the new document registers itself again."""
        self.unregister(key, discard=False)


class Autosaver(QObject):
    """Autosaves the document in a background thread when it changed since the last autosave."""
    saved = Signal(str)
    failed = Signal(str)

    def __init__(self, registry: RecoveryRegistry, interval_s: float = 60, parent=None):
        super().__init__(parent)
        self.registry = registry
        self.doc = None
        self.key = None
        self._saved_revision = -1
        self._thread: "threading.Thread | None" = None
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.autosave_now)
        self.timer.start(int(interval_s * 1000))

    def set_interval(self, seconds: float) -> None:
        self.timer.start(int(seconds * 1000))

    def attach(self, doc) -> None:
        self.detach(discard=True)
        self.doc = doc
        self.key = self.registry.register(doc)
        self._saved_revision = doc.revision

    def detach(self, discard: bool = True) -> None:
        self.wait()
        if self.key is not None:
            self.registry.unregister(self.key, discard=discard)
        self.doc, self.key = None, None

    def project_saved(self) -> None:
        """The document was saved (maybe into a new folder): autosave there from now on."""
        if self.key is not None:
            self.wait()
            self.registry.update(self.key, self.doc)
            self._saved_revision = self.doc.revision

    def autosave_now(self, block: bool = False) -> bool:
        doc = self.doc
        if doc is None or doc.revision == self._saved_revision or not doc.dirty:
            return False
        if self._thread is not None and self._thread.is_alive():
            return False
        revision, root = doc.revision, self.registry.autosave_root(doc)

        def work():
            try:
                doc.session.autosave(root)
                self._saved_revision = revision
                self.saved.emit(str(root))
            except Exception as exc:   # a failed autosave must never take the session down
                self.failed.emit(f"Autosave failed: {exc}")

        self._thread = threading.Thread(target=work, name="autosave", daemon=True)
        self._thread.start()
        if block:
            self.wait()
        return True

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
