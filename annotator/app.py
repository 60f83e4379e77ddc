"""affinity-annotate [VIDEO_OR_PROJECT]: the desktop app's entry point.

Starts Qt, offers to recover work a crash left behind (autosaves of documents that were never
closed), then opens the path given on the command line, or the bundled demo when there is none.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from PySide6.QtWidgets import QApplication, QMessageBox

from .document import Document

ORG, APP = "AffinityAnnotator", "Affinity Annotator"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="affinity-annotate", description=__doc__)
    p.add_argument("path", nargs="?", help="video file, frame folder or project folder (default: the demo)")
    p.add_argument("--checkpoint", help="model checkpoint to propagate with (saved in the settings)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (saved in the settings)")
    p.add_argument("--no-recovery", action="store_true", help="do not offer to recover autosaves")
    return p


def offer_recovery(window, ask=None) -> bool:
    """Offer each autosave a crash left behind; returns whether one was opened.
    `ask(entry) -> "recover" | "discard" | "later"` (a dialog unless given)."""
    ask = ask or (lambda e: _ask_recover(window, e))
    for entry in window.registry.pending():
        answer = ask(entry)
        if answer == "discard":
            window.registry.forget(entry["key"])
        elif answer == "recover":
            autosave = Path(entry["autosave_root"]) / ".autosave"
            try:
                doc = Document.recover(autosave, entry.get("project"))
            except Exception as exc:   # an unreadable autosave: say so, keep it for a later try
                window.errors.show("Cannot recover the autosave", f"{autosave}\n\n{exc}")
                continue
            window.registry.take(entry["key"])
            window.set_document(doc)
            window.message.setText(f"Recovered unsaved work from {datetime.fromtimestamp(entry['opened']):%c}; "
                                   "save it to keep it")
            return True
    return False


def _ask_recover(window, entry) -> str:
    what = entry.get("project") or entry["video"]
    box = QMessageBox(QMessageBox.Question, "Recover unsaved work?",
                      f"Affinity Annotator did not close normally while working on\n{what}\n\n"
                      "An autosave of that work exists. Recover it?", parent=window)
    recover = box.addButton("Recover", QMessageBox.AcceptRole)
    discard = box.addButton("Discard", QMessageBox.DestructiveRole)
    box.addButton("Later", QMessageBox.RejectRole)
    box.exec()
    return "recover" if box.clickedButton() is recover else "discard" if box.clickedButton() is discard else "later"


def leave_a_core_for_the_ui() -> int:
    """Propagation threads = cores - 1 (unless OMP_NUM_THREADS says otherwise).

    With as many OpenMP threads as cores, the busy-waiting worker threads and the Qt thread fight
    for the CPU: on this 2-core machine under load, 2 threads ran 1.8x slower than 1 and the UI
    stalled.  One core kept free costs some propagation speed and keeps the app responsive."""
    import os

    import torch
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    return torch.get_num_threads()


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    leave_a_core_for_the_ui()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORG)
    app.setApplicationName(APP)
    from .main_window import MainWindow
    window = MainWindow()
    if args.checkpoint:
        window.settings.set("model/checkpoint", str(Path(args.checkpoint).absolute()))
    if args.device:
        window.settings.set("model/device", args.device)
    window.show()
    recovered = False if args.no_recovery else offer_recovery(window)
    if not recovered:
        if args.path:
            if not window.open_path(args.path, ask=False):
                window.open_demo()
        else:
            window.open_demo()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
