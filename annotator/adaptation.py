"""Adapt the model to the opened video, from the GUI: `train.adapt` in a QThread with progress and
Cancel; the adapted checkpoint becomes the project's model.

The adapted file goes into the project folder (`models/adapted-N.pt`; before the first save, into
the app's cache folder, and the save copies it into the project), the session's `model` setting
points at it, and the propagation controller picks it up for the next run.  The bundled or chosen
model file is never written.  A cancel or a failure leaves the model in use as it was and says why.
"""
from __future__ import annotations

import tempfile
import threading
import traceback
import uuid
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, QThread, Signal, Slot

from engine.errors import AffinityError


def adapted_dir(doc) -> Path:
    if doc.project_dir is not None:
        return doc.project_dir / "models"
    base = QStandardPaths.writableLocation(QStandardPaths.CacheLocation) or tempfile.gettempdir()
    return Path(base) / "adapted-models"


def next_adapted_path(doc) -> Path:
    folder = adapted_dir(doc)
    # The cache folder is shared by every window and run of the app: a unique prefix there.
    prefix = "adapted-" if doc.project_dir is not None else f"adapted-{uuid.uuid4().hex[:8]}-"
    n = 1
    while (folder / f"{prefix}{n}.pt").exists():
        n += 1
    return folder / f"{prefix}{n}.pt"


class AdaptWorker(QObject):
    progress = Signal(int, int, float, float, float)    # generation, step, loss, elapsed, budget
    finished = Signal(int, object)                      # generation, AdaptResult
    failed = Signal(int, str, str)                      # generation, title, message

    def __init__(self, generation: int, video, checkpoint, out: Path, seconds: float, device: str):
        super().__init__()
        self.generation, self.video, self.checkpoint = generation, video, checkpoint
        self.out, self.seconds, self.device = out, seconds, device
        self.cancel = threading.Event()

    @Slot()
    def run(self) -> None:
        from engine.video import VideoSource
        from train.adapt import adapt
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            path = Path(str(self.video.path))
            # Its own decoder when the video is a file: the GUI's keeps its position and cache.
            video = VideoSource.open(path, cache_frames=64) if path.exists() else self.video
            try:
                res = adapt(video, checkpoint=self.checkpoint, out=self.out, seconds=self.seconds,
                            device=self.device, cancel=self.cancel,
                            progress=lambda p: self.progress.emit(self.generation, p.step, p.loss, p.elapsed,
                                                                  p.budget or 0.0))
            finally:
                if video is not self.video:
                    video.close()
            self.finished.emit(self.generation, res)
        except AffinityError as exc:
            self.failed.emit(self.generation, "Adaptation failed", f"{exc}\n\nThe previous model stays in use.")
        except Exception:   # a bug must not take the app down
            self.failed.emit(self.generation, "Adaptation failed",
                             traceback.format_exc(limit=8) + "\nThe previous model stays in use.")


class AdaptationController(QObject):
    started = Signal(float)                      # budget in seconds
    progress = Signal(int, float, float, float)  # step, loss, elapsed, budget
    ended = Signal(str)                          # summary for the status bar
    failed = Signal(str, str)
    model_changed = Signal(str)                  # tag of the model now in use

    def __init__(self, settings, propagation, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.propagation = propagation
        self.doc = None
        self.generation = 0
        self._worker = None
        self._thread = None
        self._then = None
        self.last_result = None

    def set_document(self, doc) -> None:
        self.cancel()
        self.doc = doc
        self._then = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def budget(self) -> float:
        seconds = float(self.settings.get("adapt/seconds") or 0)
        if seconds > 0:
            return seconds
        import torch
        device = self.settings.get("model/device")
        gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        return 15.0 if gpu else 60.0

    def adapt(self, then=None) -> bool:
        """Start adapting the model in use to this video; `then()` runs after a success."""
        if self.doc is None or self.busy:
            return False
        if self.propagation.running:
            self.failed.emit("Adaptation", "A propagation is running: let it finish or cancel it first.")
            return False
        self.generation += 1
        self._then = then
        budget = self.budget()
        out = next_adapted_path(self.doc)
        device = self.settings.get("model/device")
        w = AdaptWorker(self.generation, self.doc.video, self.propagation.models.checkpoint() or None, out, budget,
                        device)
        w.progress.connect(self._on_progress)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        thread = QThread(self)
        w.moveToThread(thread)
        thread.started.connect(w.run)
        w.finished.connect(thread.quit)
        w.failed.connect(thread.quit)
        thread.finished.connect(w.deleteLater)
        self._worker, self._thread = w, thread
        thread.start()
        self.started.emit(budget)
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel.set()
        self._then = None

    def wait(self, timeout_ms: int = 30000) -> bool:
        return self._thread is None or self._thread.wait(timeout_ms)

    def _on_progress(self, generation, step, loss, elapsed, budget) -> None:
        if generation == self.generation:
            self.progress.emit(step, loss, elapsed, budget)

    def _on_failed(self, generation, title, message) -> None:
        if generation == self.generation:
            self._then = None
            self.failed.emit(title, message)
            self.ended.emit("Adaptation failed: the previous model stays in use")

    def _on_finished(self, generation, res) -> None:
        if generation != self.generation or self.doc is None:
            return
        self.last_result = res
        if res.cancelled:
            self._then = None
            self.ended.emit(f"Adaptation cancelled after {res.steps} steps: the previous model stays in use")
            return
        self.doc.set_model(Path(res.out))
        tag = self.propagation.models.tag()
        self.model_changed.emit(tag)
        self.ended.emit(f"Adapted the model to this video: {res.steps} steps in {res.seconds:.0f} s, "
                        f"loss {res.loss_before:.3f} -> {res.loss_after:.3f}; now using {Path(res.out).name}")
        then, self._then = self._then, None
        if then is not None:
            then()

    def gate(self, run) -> bool:
        """Before a propagation: with "adapt before the first propagation" on and no adapted model
        yet, adapt first and run `run()` after; returns whether it deferred the run."""
        if not self.settings.get("adapt/auto") or self.doc is None or self.doc.model_path() is not None:
            return False
        if self.busy:
            return True
        return self.adapt(then=run)
