"""Running propagation from the GUI: what to run, the model, results onto the session, undo.

One run at a time.  A run is a list of engine Segments (from `session.plan`, `plan_stale` or
`plan_all`); the worker streams results and this controller applies each on the GUI thread, so
every frame shows up on the timeline and canvas as it is computed.  A run is one undo command
("Propagate ..."), recorded when it ends or when it is *sealed*: any user edit first seals the
running run of that layer (cancels it and records what it already applied), so the undo history
stays linear and an edit never races with a run.

Results from a cancelled or superseded run can still sit in the event queue; every signal carries
the run's generation number and anything from an older generation is ignored.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from engine.history import capture, diff
from engine.propagate import PropagationParams, Propagator

from . import commands
from .worker import PropagationWorker, start_in_thread

AUTO_DELAY_MS = 150     # after an edit, wait this long for more strokes before re-propagating


class ModelProvider:
    """Builds the Propagator once per (model, device, parameters) and keeps it (its feature
    cache makes re-propagation after a correction start fast).  Thread-safe; runs in the worker."""

    def __init__(self, settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._key = None
        self._propagator = None
        self.note = ""
        self.params_override: "PropagationParams | None" = None   # tests and benchmarks
        self.project_model = lambda: None    # the open project's own model (adapted), if any

    def params(self, device_type: str) -> PropagationParams:
        if self.params_override is not None:
            return self.params_override
        g = self.settings.get
        scale = g("propagation/scale") or (1.0 if device_type == "cuda" else 0.5)
        # Unset values stay None so the engine applies the checkpoint's own protocol.
        return PropagationParams(topk=g("propagation/topk") or None,
                                 context=None if g("propagation/context") < 0 else g("propagation/context"),
                                 radius=g("propagation/radius") or None,
                                 temperature=g("propagation/temperature") or None,
                                 scale=min(1.0, max(0.05, scale))).validate()

    def checkpoint(self) -> str:
        """The checkpoint propagation uses: the project's own (adapted) model, else the app setting
        ("" = the bundled model)."""
        own = self.project_model()
        return str(own) if own else self.settings.get("model/checkpoint")

    def tag(self) -> str:
        """Short name of the model in use, recorded with every propagated frame."""
        checkpoint = self.checkpoint()
        return Path(checkpoint).name if checkpoint else "bundled default"

    def __call__(self):
        """(propagator, note, model tag), built once per model, device and parameters."""
        import torch
        device = self.settings.get("model/device")
        dtype = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
        checkpoint = self.checkpoint()
        params = self.params(dtype)
        key = (checkpoint, device, repr(params))
        with self._lock:
            if key != self._key:
                encoder, self.note = self._encoder(checkpoint)
                self._propagator = Propagator(encoder, params, device=device)
                self._key = key
            return self._propagator, self.note, self.tag()

    _shared: dict = {}   # encoders by checkpoint, shared by every window of the process

    @classmethod
    def _encoder(cls, checkpoint: str):
        if checkpoint not in cls._shared:
            cls._shared.clear()      # one model in memory at a time
            cls._shared[checkpoint] = cls._load_encoder(checkpoint)
        return cls._shared[checkpoint]

    @staticmethod
    def _load_encoder(checkpoint: str):
        from engine.models import default_checkpoint_path, load_encoder, random_encoder
        if checkpoint:
            return load_encoder(checkpoint=checkpoint), ""
        if default_checkpoint_path().exists():
            return load_encoder(), ""
        return (random_encoder("crw-r18-s8"),
                "No trained model is bundled yet: propagating with seeded random weights (labels will be rough). "
                "Choose a checkpoint in Settings.")


def plan_run(session, frame: int, direction: str, extent: str, layer: str) -> list:
    """Segments for "propagate from here": forward/backward/both, to the next keyframe or, with
    extent "end", on through every later (earlier) keyframe's segment to the end (start)."""
    out = []
    for d in (("forward", "backward") if direction == "both" else (direction,)):
        segs = session.plan(frame, d, layer)
        out += segs
        if extent == "end" and segs:
            keys = session.keyframes(layer)
            later = [k for k in keys if k > segs[0].keyframe] if d == "forward" else \
                [k for k in reversed(keys) if k < segs[0].keyframe]
            for k in later:
                out += session.plan(k, d, layer)
    return out


class PropagationController(QObject):
    started = Signal(str, int)          # description, frames planned
    progress = Signal(int, int)         # frames done, frames planned
    frame_applied = Signal(int)
    ended = Signal(str)                 # summary
    failed = Signal(str, str)           # title, message
    note = Signal(str)                  # model note (e.g. random weights)

    def __init__(self, settings, parent=None):
        super().__init__(parent)
        self.settings = settings
        self.models = ModelProvider(settings)
        self.doc = None
        self.generation = 0
        self._worker = None
        self._thread = None
        self._run = None                 # dict of the active run
        self._queued = None              # a run waiting for the previous thread to end
        self._auto = QTimer(self)
        self._auto.setSingleShot(True)
        self._auto.setInterval(AUTO_DELAY_MS)
        self._auto.timeout.connect(self.repropagate_stale)
        self.auto_layer = "mask"
        self.first_result_at = None      # perf_counter of the first applied result of the run
        self.gate = None                 # gate(run_later) -> True when it deferred the run (adapt first)

    # -- document -------------------------------------------------------------------------------
    def set_document(self, doc) -> None:
        self.detach()
        self.doc = doc
        self.models.project_model = doc.model_path
        doc.before_edit.append(self._before_edit)
        doc.undo.indexChanged.connect(self._after_edit)

    def detach(self) -> None:
        """Stop listening to the current document (it is being closed or replaced)."""
        self.cancel()
        if self.doc is not None:
            if self._before_edit in self.doc.before_edit:
                self.doc.before_edit.remove(self._before_edit)
            try:
                self.doc.undo.indexChanged.disconnect(self._after_edit)
            except (RuntimeError, TypeError):
                pass
        self.doc = None

    @property
    def running(self) -> bool:
        return self._run is not None

    @property
    def busy(self) -> bool:
        """A run is active or its thread is still winding down."""
        return self._run is not None or (self._thread is not None and self._thread.isRunning())

    # -- starting -------------------------------------------------------------------------------
    def propagate(self, frame: int, direction: str, layer: str, extent: "str | None" = None) -> bool:
        extent = extent or self.settings.get("propagation/extent")
        segs = plan_run(self.doc.session, frame, direction, extent, layer)
        if not segs:
            self.ended.emit(self._nothing_to_do(frame, direction, layer))
            return False
        arrow = {"forward": "forward", "backward": "backward", "both": "both ways"}[direction]
        return self.start(segs, f"Propagate {arrow} from frame {segs[0].keyframe}", layer)

    def repropagate_stale(self, layer: "str | None" = None) -> bool:
        layer = layer or self.auto_layer
        if self.doc is None:
            return False
        segs = self.doc.session.plan_stale(layer)
        if not segs:
            self.ended.emit("Nothing is stale")
            return False
        return self.start(segs, "Re-propagate stale frames", layer)

    def repropagate_outdated(self, layer: "str | None" = None) -> bool:
        """Re-run the frames an earlier model made (e.g. before adapting the model to this video)."""
        layer = layer or self.auto_layer
        if self.doc is None:
            return False
        segs = self.doc.session.plan_outdated(self.models.tag(), layer)
        if not segs:
            self.ended.emit(f"Every propagated frame already comes from {self.models.tag()}")
            return False
        return self.start(segs, "Re-propagate frames of earlier models", layer)

    def propagate_all(self, layer: str) -> bool:
        segs = self.doc.session.plan_all(layer)
        if not segs:
            self.ended.emit("Every frame is labelled and up to date")
            return False
        return self.start(segs, "Propagate all", layer)

    def _nothing_to_do(self, frame, direction, layer) -> str:
        if not self.doc.session.keyframes(layer):
            what = "mask" if layer == "mask" else "keypoint"
            return f"No {what} keyframe yet: label a frame first"
        return f"Nothing to propagate {direction} from frame {frame}"

    def start(self, segments, description: str, layer: str) -> bool:
        if self.gate is not None and self.gate(lambda: self.start(segments, description, layer)):
            return True
        self.seal()
        run = {"segments": list(segments), "description": description, "layer": layer,
               "total": sum(len(s) for s in segments), "done": 0, "applied": 0,
               "before": capture(self.doc.session, layer), "t0": time.perf_counter()}
        if self._thread is not None and self._thread.isRunning():
            self._queued = run       # the previous worker is finishing its current frame
            return True
        self._launch(run)
        return True

    def _launch(self, run) -> None:
        self.generation += 1
        run["generation"] = self.generation
        self._run = run
        self.first_result_at = None
        worker = PropagationWorker(self.generation, self.doc.session, run["segments"], self.models)
        worker.result.connect(self._on_result)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.model_ready.connect(self._on_model)
        self._worker = worker
        self._thread = start_in_thread(worker, self)
        self.started.emit(run["description"], run["total"])

    # -- results --------------------------------------------------------------------------------
    def _on_model(self, generation: int, note: str, tag: str) -> None:
        if self._run is not None and generation == self._run["generation"]:
            self._run["model"] = tag or None
        if note and generation == self.generation:
            self.note.emit(note)

    def _on_result(self, generation: int, segment, result) -> None:
        worker = self._worker
        if worker is not None and generation == worker.generation:
            worker.consumed()
        run = self._run
        if run is None or generation != run["generation"]:
            return
        run["done"] += 1
        if self.doc.session.apply_result(result, segment=segment, model=run.get("model")):
            run["applied"] += 1
            if self.first_result_at is None:
                self.first_result_at = time.perf_counter()
            self.frame_applied.emit(result.index)
        self.progress.emit(run["done"], run["total"])

    def _on_failed(self, generation: int, title: str, message: str) -> None:
        if self._run is not None and generation == self._run["generation"]:
            self.failed.emit(title, message)

    def _on_finished(self, generation: int, cancelled: bool) -> None:
        if self._run is not None and generation == self._run["generation"]:
            self._finish(cancelled)
        if self._queued is not None:
            run, self._queued = self._queued, None
            # the capture must describe the session as the run starts
            run["before"] = capture(self.doc.session, run["layer"])
            QTimer.singleShot(0, lambda: self._launch(run))

    def _finish(self, cancelled: bool) -> None:
        run, self._run = self._run, None
        if self._worker is not None:
            self._worker.stop()
        change = diff(run["before"], capture(self.doc.session, run["layer"]))
        first = run["segments"][0].keyframe if run["segments"] else None
        self._pushing = True
        try:
            commands.push_change(self.doc, f"{run['description']} ({run['applied']} frames)", change, first)
        finally:
            self._pushing = False
        secs = time.perf_counter() - run["t0"]
        verb = "Cancelled" if cancelled else "Done"
        self.ended.emit(f"{verb}: {run['description'].lower()}: {run['applied']} frames in {secs:.1f} s")

    # -- stopping -------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop the run; the frames it already computed stay (and are one undo step)."""
        if self._run is not None:
            self._finish(cancelled=True)
        self._queued = None
        self._auto.stop()

    def seal(self, layer: "str | None" = None) -> None:
        if self._run is not None and (layer is None or self._run["layer"] == layer):
            self.cancel()

    def wait(self, timeout_ms: int = 10000) -> bool:
        """Block until the worker thread has ended (closing the app, tests)."""
        if self._thread is not None:
            return self._thread.wait(timeout_ms)
        return True

    # -- edits ----------------------------------------------------------------------------------
    _pushing = False

    def _before_edit(self, layer: str) -> None:
        self.seal(layer)
        self._auto.stop()

    def _after_edit(self, _index: int) -> None:
        if self._pushing or self.doc is None:
            return
        if self.settings.get("propagation/auto_repropagate"):
            self._auto.start()
