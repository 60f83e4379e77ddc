"""Clip datasets over folders of videos and/or frame folders, decoded in DataLoader workers.

Layouts found by one walk of the data folder:
* video files (any container PyAV reads; by extension), e.g. Kinetics `train_256/<class>/<id>.mp4`;
* frame folders: any folder holding at least `min_frames` images, e.g. DAVIS `<seq>/JPEGImages/`
  or `JPEGImages/480p/<seq>/`, YouTube-VOS `train/JPEGImages/<id>/`, Kinetics frames
  `<class>/<id>/img_00001.jpg`.  `Annotations` folders (masks) are never training frames, and
  DAVIS `Full-Resolution` is skipped when `480p` sits beside it.

Sampling is a pure function of (seed, global sample index): sample g belongs to epoch
g // epoch_size, whose source order is a seeded permutation of `clips_per_video` copies of every
source; the start frame and all augmentation draws come from a generator seeded with (seed, g).
So the data a step sees does not depend on the number of workers or processes, and "data position"
for an exact resume is just the number of samples consumed (`StepBatchSampler`).
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from engine.errors import ConfigError, VideoError

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SKIP_DIRS = {"annotations", "annotations_unsupervised"}


@dataclass(frozen=True)
class ClipSource:
    path: str
    n_frames: int
    fps: float
    kind: str          # "video" | "frames"


def find_sources(root: "str | os.PathLike", min_frames: int = 2) -> tuple[list[Path], list[Path]]:
    """(video files, frame folders) under root, sorted for a reproducible order."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(root, "data folder does not exist")
    if root.is_file():
        return [root], []
    videos, folders = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        lower = {d.lower() for d in dirnames}
        dirnames[:] = sorted(d for d in dirnames if d.lower() not in SKIP_DIRS
                             and not (d == "Full-Resolution" and "480p" in lower))
        images = [f for f in filenames if f.lower().endswith(IMAGE_EXTS)]
        if len(images) >= min_frames:
            folders.append(Path(dirpath))
        videos += [Path(dirpath) / f for f in filenames if f.lower().endswith(VIDEO_EXTS)]
    return sorted(videos), sorted(folders)


def build_index(root, clip_len: int, frame_folder_fps: float = 24.0) -> tuple[list[ClipSource], list[dict]]:
    """Open every source once (length, fps); unreadable or too-short ones are skipped with a warning.

    Returns (usable sources, skipped [{path, reason}]).
    """
    from engine.video import VideoSource

    videos, folders = find_sources(root)
    sources, skipped = [], []
    for kind, paths in (("video", videos), ("frames", folders)):
        for p in paths:
            try:
                with VideoSource.open(p, cache_frames=0, fps=frame_folder_fps if kind == "frames" else None) as v:
                    n, fps = len(v), float(v.fps or frame_folder_fps)
            except (VideoError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                warnings.warn(f"skipping unreadable {kind} source {p}: {reason}", stacklevel=2)
                skipped.append({"path": str(p), "reason": reason})
                continue
            if n < clip_len:
                skipped.append({"path": str(p), "reason": f"{n} frames < clip length {clip_len}"})
                continue
            sources.append(ClipSource(str(p), n, fps, kind))
    if not sources:
        raise ConfigError(root, f"no usable training clips (found {len(videos)} videos and {len(folders)} frame "
                                f"folders; {len(skipped)} skipped)")
    return sources, skipped


def clip_frames(n: int, fps: float, clip_len: int, target_fps: float, rng: np.random.Generator) -> list[int]:
    """Indices of a clip of `clip_len` frames at about `target_fps` from a random start.

    The step is round(fps / target_fps) (>= 1), reduced until the clip fits (CRW's VideoList rule).
    """
    step = max(1, int(round(fps / target_fps))) if target_fps > 0 else 1
    while step > 1 and (clip_len - 1) * step + 1 > n:
        step -= 1
    span = (clip_len - 1) * step + 1
    if span > n:
        raise ValueError(f"{n} frames cannot hold a clip of {clip_len}")
    start = int(rng.integers(0, n - span + 1))
    return [start + i * step for i in range(clip_len)]


def sample_seed(seed: int, index: int) -> int:
    """The per-sample seed (also handed to the loss for its random draws, e.g. edge dropout)."""
    return int(np.random.default_rng([int(seed), int(index), 0x5EED]).integers(0, 2 ** 62))


class ClipDataset(Dataset):
    """Map-style dataset over global sample indices 0, 1, 2, ... (unbounded; see module doc)."""

    def __init__(self, sources: list[ClipSource], clip_len: int, fps: float, transform, seed: int = 0,
                 clips_per_video: int = 5, max_open: int = 8, max_retries: int = 10):
        if not sources:
            raise ConfigError(None, "ClipDataset needs at least one source")
        self.sources = list(sources)
        self.clip_len, self.fps, self.transform = int(clip_len), float(fps), transform
        self.seed, self.clips_per_video = int(seed), int(clips_per_video)
        self.max_open, self.max_retries = int(max_open), int(max_retries)
        self._open: OrderedDict[str, object] = OrderedDict()   # per worker process
        self._bad: set[int] = set()
        self._perm_epoch, self._perm = -1, None

    @property
    def epoch_size(self) -> int:
        return len(self.sources) * self.clips_per_video

    def __len__(self) -> int:   # one epoch; indices beyond it are valid too (next epochs)
        return self.epoch_size

    def source_of(self, index: int) -> int:
        epoch, pos = divmod(int(index), self.epoch_size)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 0xE90C]).permutation(self.epoch_size)
            self._perm_epoch = epoch
        return int(self._perm[pos] % len(self.sources))

    def _video(self, src: ClipSource):
        from engine.video import VideoSource
        v = self._open.pop(src.path, None)
        if v is None:
            v = VideoSource.open(src.path, cache_frames=0, fps=src.fps if src.kind == "frames" else None)
        self._open[src.path] = v
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return v

    def read_clip(self, si: int, rng: np.random.Generator) -> list[np.ndarray]:
        src = self.sources[si]
        idx = clip_frames(src.n_frames, src.fps, self.clip_len, self.fps, rng)
        v = self._video(src)
        return [v.frame(i) for i in idx]

    def __getitem__(self, index: int) -> dict:
        seed = sample_seed(self.seed, index)
        rng = np.random.default_rng(seed)
        si = self.source_of(index)
        for attempt in range(self.max_retries + 1):
            if si not in self._bad:
                try:
                    frames = self.read_clip(si, rng)
                    break
                except Exception as exc:   # a corrupt file must never stop training: skip it, say so once
                    self._bad.add(si)
                    old = self._open.pop(self.sources[si].path, None)
                    if old is not None:
                        old.close()
                    warnings.warn(f"skipping source {self.sources[si].path}: {type(exc).__name__}: {exc}")
            # Deterministic replacement: the same index always falls back to the same clip.
            si = int(rng.integers(0, len(self.sources)))
        else:
            raise VideoError(None, f"sample {index}: {self.max_retries + 1} sources in a row could not be read")
        out = self.transform(frames, rng)
        out["index"] = torch.tensor(int(index), dtype=torch.int64)
        out["seed"] = torch.tensor(seed, dtype=torch.int64)
        out["source"] = torch.tensor(si, dtype=torch.int64)    # which video (LIIR's inter-video negatives)
        return out

    def describe(self) -> dict:
        return {"sources": len(self.sources), "frames": sum(s.n_frames for s in self.sources),
                "videos": sum(s.kind == "video" for s in self.sources),
                "frame_folders": sum(s.kind == "frames" for s in self.sources),
                "clip_len": self.clip_len, "fps": self.fps, "clips_per_video": self.clips_per_video,
                "epoch_size": self.epoch_size}


class StepBatchSampler(Sampler):
    """Batches of global sample indices for one process, endless, starting at `start_step`.

    Step s covers samples [s*G, (s+1)*G) with G = local_batch * world; rank r takes the r-th slice,
    so one process with batch G sees exactly what `world` processes see together.
    """

    def __init__(self, local_batch: int, rank: int = 0, world: int = 1, start_step: int = 0,
                 max_steps: "int | None" = None):
        self.local_batch, self.rank, self.world = int(local_batch), int(rank), int(world)
        self.start_step, self.max_steps = int(start_step), max_steps

    def __iter__(self) -> Iterator[list[int]]:
        g = self.local_batch * self.world
        s = self.start_step
        while self.max_steps is None or s < self.max_steps:
            base = s * g + self.rank * self.local_batch
            yield list(range(base, base + self.local_batch))
            s += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            raise TypeError("endless sampler")
        return max(0, self.max_steps - self.start_step)


def worker_init(_worker_id: int) -> None:
    # Workers decode and augment; one thread each so they do not fight the training threads.
    torch.set_num_threads(1)
    import cv2
    cv2.setNumThreads(1)


def make_loader(dataset: ClipDataset, local_batch: int, rank: int, world: int, start_step: int,
                max_steps: int, num_workers: int, pin_memory: bool = False):
    from torch.utils.data import DataLoader
    sampler = StepBatchSampler(local_batch, rank, world, start_step, max_steps)
    kw = dict(num_workers=num_workers, pin_memory=pin_memory, worker_init_fn=worker_init)
    if num_workers > 0:
        kw.update(prefetch_factor=2, persistent_workers=False)
    return DataLoader(dataset, batch_sampler=sampler, **kw)


def describe_sources(sources: list[ClipSource], skipped: list[dict], root) -> dict:
    return {"root": str(root), "sources": [asdict(s) for s in sources][:1000], "skipped": skipped}
