"""Project folders: saving and loading an AnnotationSession.

```
project.json        {"format": "affinity-annotator.project", "version": 1, "created", "modified",
                     "video": {"path" (absolute), "relative_path" (from the folder), "fingerprint"},
                     "num_frames", "size": [w, h], "objects": {"1": {"name", "colour": [r, g, b]}},
                     "keypoint_schema": {...} | null, "default_layer": "mask" | "keypoints",
                     "keyframes": {"mask": [...], "keypoints": [...]},
                     "provenance": {"mask": [{"frame", "kind", "source", "confidence"}, ...],
                                    "keypoints": [...]},  (non-empty frames only)
                     "settings": {...}}
labels/NNNNN.png    palette PNG of every frame with a mask (keyframes, propagated and stale)
keypoints.json      {"format": "affinity-annotator.keypoints", "version": 1, "names": [...],
                     "frames": {"12": {"points": [[x, y] | null, ...], "visible": [...],
                                       "kind", "source", "confidence"}}}  (only with a schema)
```
A save writes the whole project into a staging folder beside the target and swaps it in
(`atomic.staged_dir`), so a crash at any point leaves the previous project or the new one, never a
mix of the two (per-file writes with project.json last would leave new PNGs under an old
project.json).  It stays cheap: PNGs of frames unchanged since they were last written to that
folder are hard-linked from the old folder instead of re-encoded.  Files of others in an existing
project folder are carried over (hard links); saving into a non-empty folder that is not a project
is refused, so a save can never swallow someone's files.  A successful save drops the autosave.
Soft labels are not saved.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import atomic
from . import labels as L
from .errors import LabelError, ProjectError
from .labels import KeypointSchema, Keypoints
from .session import EMPTY, KINDS, LAYERS, PROPAGATED, STALE, USER, AnnotationSession, now_iso

FORMAT, VERSION = "affinity-annotator.project", 1
KP_FORMAT = "affinity-annotator.keypoints"
AUTOSAVE = ".autosave"
OURS = {"project.json", "keypoints.json", "labels"}
FIELD_NAMES = {"size": "size", "frames": "frame count", "sha1": "first-frames hash"}


def has_autosave(folder) -> bool:
    return (Path(folder) / AUTOSAVE / "project.json").is_file()


def discard_autosave(folder) -> None:
    shutil.rmtree(Path(folder) / AUTOSAVE, ignore_errors=True)


# -- save -----------------------------------------------------------------------------------------
def save(session: AnnotationSession, folder, autosave: bool = False) -> None:
    folder = Path(folder).absolute()
    target = folder / AUTOSAVE if autosave else folder
    if not autosave:
        _check_target(folder)
    snap = _snapshot(session)
    key = str(target)
    previous = session._written.get(key, {})
    with atomic.staged_dir(target) as stage:
        written = _write_masks(stage, target, snap["mask"], previous)
        if session.schema is not None or snap["keypoints"]["labels"]:
            _write_keypoints(stage / "keypoints.json", session.schema, snap["keypoints"])
        doc = _project_doc(session, snap, target)
        atomic.write_text(stage / "project.json", json.dumps(doc, indent=1))
        if not autosave:
            _carry_over(folder, stage)
    with session._lock:
        session._written[key] = written
        if not autosave:
            session.modified = doc["modified"]
            session._saved_clock = snap["clock"]


def _check_target(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ProjectError(folder, "is not a folder")
    if folder.is_dir() and not (folder / "project.json").exists():
        if any(not _is_autosave(e.name) for e in folder.iterdir()):
            raise ProjectError(folder, "is not empty and holds no project.json; save a project into an "
                                       "empty or new folder")


def _is_autosave(name: str) -> bool:
    # ".autosave" and its staging folders ("..autosave.partial-*", "..autosave.old-*")
    return name == AUTOSAVE or name.startswith("." + AUTOSAVE + ".")


def _snapshot(session: AnnotationSession) -> dict:
    # Labels are never modified in place, so references are a consistent copy; the slow writing
    # then runs without the lock and a worker can keep applying results meanwhile.
    with session._lock:
        snap = {"clock": session._clock, "objects": session.objects, "settings": dict(session._settings),
                "model_tags": list(session._model_tags)}
        for name, layer in session._layers.items():
            snap[name] = {"status": layer.status.copy(), "source": layer.source.copy(), "model": layer.model.copy(),
                          "conf": layer.conf.copy(), "labels": dict(layer.labels),
                          "rev": dict(layer.rev), "keys": list(layer.keys)}
        if session._fingerprint is None:
            session._fingerprint = json.loads(json.dumps(session.video.fingerprint()))
        snap["fingerprint"] = session._fingerprint
        return snap


def _write_masks(stage: Path, target: Path, snap: dict, previous: dict) -> dict:
    out = stage / "labels"
    out.mkdir()
    written = {}
    for i, mask in sorted(snap["labels"].items()):
        name = f"{i:05d}.png"
        rev = snap["rev"][i]
        if not (previous.get(i) == rev and _link(target / "labels" / name, out / name)):
            L.write_mask(out / name, mask)
        written[i] = rev
    return written


def _link(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except FileNotFoundError:
        return False
    except OSError:   # file systems without hard links
        try:
            shutil.copyfile(src, dst)
            return True
        except OSError:
            return False


def _carry_over(folder: Path, stage: Path) -> None:
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name not in OURS and not _is_autosave(entry.name):
            _link_tree(entry, stage / entry.name)


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir()
        for e in src.iterdir():
            _link_tree(e, dst / e.name)
    elif not _link(src, dst):
        raise ProjectError(src, "cannot be carried over into the saved project folder")


def _entries(snap: dict, tags=()) -> list[dict]:
    out = []
    for i in np.flatnonzero(snap["status"] != EMPTY):
        code = int(snap["status"][i])
        e = {"frame": int(i), "kind": KINDS[code],
             "source": int(snap["source"][i]) if code in (PROPAGATED, STALE) else None,
             "confidence": float(snap["conf"][i])}
        m = int(snap["model"][i])
        if code in (PROPAGATED, STALE) and 0 <= m < len(tags):
            e["model"] = tags[m]
        out.append(e)
    return out


def _project_doc(session: AnnotationSession, snap: dict, target: Path) -> dict:
    path = Path(session.video.path).absolute()
    try:
        rel = os.path.relpath(path, target)
    except ValueError:   # another drive (Windows)
        rel = None
    return {
        "format": FORMAT, "version": VERSION, "created": session.created, "modified": now_iso(),
        "video": {"path": str(path), "relative_path": rel, "fingerprint": snap["fingerprint"]},
        "num_frames": len(session), "size": list(session.size),
        "objects": {str(k): {"name": v["name"], "colour": list(v["colour"])} for k, v in snap["objects"].items()},
        "keypoint_schema": None if session.schema is None else session.schema.to_dict(),
        "default_layer": session.default_layer,
        "keyframes": {name: snap[name]["keys"] for name in LAYERS},
        "provenance": {name: _entries(snap[name], snap["model_tags"]) for name in LAYERS},
        "settings": snap["settings"],
    }


def _write_keypoints(path: Path, schema: "KeypointSchema | None", snap: dict) -> None:
    frames = {}
    for e in _entries(snap):
        kp = snap["labels"][e["frame"]]
        frames[str(e["frame"])] = {
            "points": [[float(x), float(y)] if v else None for (x, y), v in zip(kp.xy, kp.visible)],
            "visible": [bool(v) for v in kp.visible],
            **{k: e[k] for k in ("kind", "source", "confidence")}}
    doc = {"format": KP_FORMAT, "version": VERSION, "names": [] if schema is None else list(schema.names),
           "frames": frames}
    atomic.write_text(path, json.dumps(doc, indent=1))


# -- load -----------------------------------------------------------------------------------------
def load(folder, video=None, allow_mismatch: bool = False) -> AnnotationSession:
    folder = Path(folder).absolute()
    _recover_swap(folder)
    pj = folder / "project.json"
    doc = _read_json(pj, FORMAT)
    try:
        vd = doc["video"]
        schema = None if doc.get("keypoint_schema") is None else KeypointSchema.from_dict(doc["keypoint_schema"])
        objects = {int(k): {"name": v["name"], "colour": tuple(v["colour"])} for k, v in doc["objects"].items()}
        settings = dict(doc.get("settings") or {})
        provenance = {name: list(doc["provenance"].get(name, [])) for name in LAYERS}
        keyframes = {name: sorted(int(k) for k in doc["keyframes"].get(name, [])) for name in LAYERS}
    except (KeyError, TypeError, ValueError, AttributeError, LabelError) as exc:
        raise ProjectError(pj, f"malformed project file ({exc})") from None
    if video is None:
        video = _open_video(pj, folder, vd)
    if not allow_mismatch:
        _compare_fingerprint(pj, vd.get("fingerprint") or {}, video.fingerprint())
    session = AnnotationSession(video, schema, objects, settings=settings)
    if doc.get("default_layer") in LAYERS:
        session.default_layer = doc["default_layer"]
    session.created = doc.get("created") or session.created
    session.modified = doc.get("modified")

    masks = {}
    for e in provenance["mask"]:
        png = folder / "labels" / f"{int(e['frame']):05d}.png"
        try:
            masks[int(e["frame"])] = L.read_mask(png, size=session.size)
        except LabelError as exc:
            raise ProjectError(png, exc.reason) from None
    points = _read_points(folder / "keypoints.json", provenance["keypoints"], session) if provenance["keypoints"] else {}
    with session._lock:
        for name, values in (("mask", masks), ("keypoints", points)):
            _restore(pj, session, name, provenance[name], keyframes[name], values)
        session._written[str(folder)] = dict(session._layers["mask"].rev)
        session._saved_clock = session._clock
    return session


def _recover_swap(folder: Path) -> None:
    """A crash between the two renames of a save leaves the previous project in `.<name>.old-*`
    beside the folder; put it back."""
    if (folder / "project.json").exists() or (folder.is_dir() and any(folder.iterdir())):
        return
    if not folder.parent.is_dir():
        return
    olds = [p for p in folder.parent.iterdir()
            if p.name.startswith(f".{folder.name}.old-") and (p / "project.json").is_file()]
    if olds:
        if folder.is_dir():
            folder.rmdir()
        os.replace(max(olds, key=lambda p: p.stat().st_mtime), folder)


def _read_json(path: Path, fmt: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProjectError(path, "does not exist (not a project folder)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ProjectError(path, f"is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ProjectError(path, f"is not an Affinity Annotator file (format {found!r}, expected {fmt!r})")
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise ProjectError(path, f"has no valid format version (got {version!r})")
    if version > VERSION:
        raise ProjectError(path, f"has format version {version}, newer than this program reads ({VERSION}); update it")
    return doc


def _open_video(pj: Path, folder: Path, vd: dict):
    from .video import VideoSource
    candidates = [folder / vd["relative_path"]] if vd.get("relative_path") else []
    if vd.get("path"):
        candidates.append(Path(vd["path"]))
    for c in candidates:
        if c.exists():
            return VideoSource.open(c)
    raise ProjectError(pj, f"the video is not at {' or '.join(map(str, candidates)) or '(no path stored)'}; "
                           "open it and pass it as video=")


def _compare_fingerprint(pj: Path, stored: dict, current: dict) -> None:
    current = json.loads(json.dumps(current))
    diffs = [f"{FIELD_NAMES.get(k, k)}: project has {stored.get(k)!r}, video has {current.get(k)!r}"
             for k in sorted(set(stored) | set(current)) if stored.get(k) != current.get(k)]
    if diffs:
        raise ProjectError(pj, "the video does not match the project (" + "; ".join(diffs)
                               + "); pass allow_mismatch=True to open it anyway")


def _read_points(path: Path, entries: list, session: AnnotationSession) -> dict:
    doc = _read_json(path, KP_FORMAT)
    out = {}
    try:
        for e in entries:
            f = doc["frames"][str(int(e["frame"]))]
            pts = f["points"]
            visible = [bool(v) and p is not None for v, p in zip(f["visible"], pts)]
            xy = np.array([[np.nan, np.nan] if p is None else p for p in pts], np.float32).reshape(-1, 2)
            kp = Keypoints(xy, visible)
            if len(kp.xy) != len(session.schema):
                raise ValueError(f"frame {e['frame']} has {len(kp.xy)} points, the schema {len(session.schema)}")
            kp.check_inside(session.size, f"frame {e['frame']}")
            out[int(e["frame"])] = kp
    except (KeyError, TypeError, ValueError, LabelError) as exc:
        raise ProjectError(path, f"malformed keypoints ({exc})") from None
    return out


def _restore(pj: Path, session: AnnotationSession, name: str, entries: list, keys: list, values: dict) -> None:
    layer = session._layers[name]
    try:
        for e in entries:
            i, code = session._index(e["frame"]), KINDS.index(e["kind"])
            layer.status[i] = code
            layer.source[i] = -1 if e.get("source") is None else int(e["source"])
            layer.conf[i] = np.nan if e.get("confidence") is None else float(e["confidence"])
            layer.model[i] = session._tag_index(e.get("model"))
            layer.labels[i] = values[i]
            session._clock += 1
            layer.rev[i] = session._clock
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProjectError(pj, f"malformed {name} provenance ({exc!r})") from None
    users = np.flatnonzero(layer.status == USER).tolist()
    if users != keys:
        raise ProjectError(pj, f"{name} keyframes {keys} do not match the frames marked 'user' {users}")
    bad = [i for i in np.flatnonzero(layer.status == PROPAGATED) if int(layer.source[i]) not in keys]
    layer.status[bad] = STALE   # a result whose keyframe is gone cannot be valid
    layer.keys = list(keys)
    for k in keys:
        session._clock += 1
        layer.version[k] = session._clock
