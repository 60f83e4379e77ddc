"""The one background propagation worker: engine's generator driven in a QThread.

Like napari's `thread_worker`, each `yield` of `AnnotationSession.propagate` becomes a Qt signal
(`result`), and cancelling sets the engine's CancelToken, which the generator checks between frames.
The worker never touches widgets and never applies results: the GUI thread applies them (cheap:
the session stores references), which keeps the undo recording and the display on one thread.

A small semaphore bounds the results in flight, so a fast device cannot flood the event queue
with frames the GUI has not drawn yet.  Engine errors (bad checkpoint, undecodable frame) come back
as `failed` with the file and reason; anything else as `failed` with the traceback, never a crash.
"""
from __future__ import annotations

import threading
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.errors import AffinityError
from engine.propagate import CancelToken

IN_FLIGHT = 4


class PropagationWorker(QObject):
    model_ready = Signal(int, str, str)         # generation, note about the model (empty if none), model tag
    result = Signal(int, object, object)        # generation, Segment, FrameResult
    finished = Signal(int, bool)                # generation, cancelled
    failed = Signal(int, str, str)              # generation, title, message

    def __init__(self, generation: int, session, segments, make_propagator):
        super().__init__()
        self.generation = generation
        self.session = session
        self.segments = list(segments)
        self.make_propagator = make_propagator
        self.cancel = CancelToken()
        self.slots = threading.Semaphore(IN_FLIGHT)

    def stop(self) -> None:
        self.cancel.set()
        self.slots.release()      # wake a worker waiting for the GUI

    def consumed(self) -> None:
        """The GUI thread applied one result."""
        self.slots.release()

    @Slot()
    def run(self) -> None:
        try:
            propagator, note, tag = self.make_propagator()
            self.model_ready.emit(self.generation, note, tag)
            for segment in self.segments:
                if self.cancel.is_set():
                    break
                for r in self.session.propagate(propagator, segment, cancel=self.cancel, apply=False):
                    if r.is_keyframe:
                        continue
                    while not self.slots.acquire(timeout=0.1):
                        if self.cancel.is_set():
                            break
                    if self.cancel.is_set():
                        break
                    self.result.emit(self.generation, segment, r)
        except AffinityError as exc:
            self.failed.emit(self.generation, "Propagation stopped", str(exc))
        except Exception:   # a bug must not take the app down: report it with its traceback
            self.failed.emit(self.generation, "Propagation failed", traceback.format_exc(limit=8))
        self.finished.emit(self.generation, self.cancel.is_set())


def start_in_thread(worker: PropagationWorker, parent) -> QThread:
    thread = QThread(parent)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    thread.finished.connect(worker.deleteLater)
    thread.start()
    return thread
