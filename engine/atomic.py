"""Atomic writes: a reader sees either the old file/folder or the complete new one, never a part."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def write_bytes(path: "str | os.PathLike", data: bytes) -> None:
    write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path: "str | os.PathLike", text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_with(path: "str | os.PathLike", writer: Callable[[str], None], suffix: str = "") -> None:
    """Call writer(tmp_path) then move tmp_path onto path; the temp file is removed on failure.

    `suffix` lets libraries that choose the format by extension (Pillow, PyAV) see the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def staged_dir(final: "str | os.PathLike") -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` as a whole.

    On any exception the staging folder is deleted and `final` is left as it was, so a failed run
    never leaves partial output behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    backup = None
    if final.exists():
        backup = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, backup)
    os.replace(stage, final)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
