"""Per-method clip augmentations (research spec §3.1 for CRW/JSTG; Lab + channel dropout for the
reconstruction family, §4.1/§6.2/§8).

Every random choice comes from a `numpy.random.Generator` the caller passes in: the data layer seeds
it from the global sample index, so a clip is the same whatever the worker count, the world size or
a resume point.  Images are RGB uint8 [H, W, 3]; outputs are float32 tensors, normalised with the
model spec's mean/std so that training sees what the engine's `Encoder.preprocess` gives at test time
(spec §1.2 **Follow:** ImageNet statistics at train time too, removing CRW's CIFAR/ImageNet mismatch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from engine.errors import ConfigError
from engine.models.specs import IMAGENET_MEAN, IMAGENET_STD

LUMA = np.float32([0.299, 0.587, 0.114])   # ITU-R 601 grey, as torchvision's greyscale


def random_resized_crop_box(h: int, w: int, scale: Sequence[float], ratio: Sequence[float],
                            rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) as torchvision's RandomResizedCrop draws it (10 tries, then a
    centre crop with the ratio clamped)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(*log_r))
        cw = int(round(math.sqrt(target * r)))
        ch = int(round(math.sqrt(target / r)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_resized_crop(img: np.ndarray, size: int, scale, ratio, rng: np.random.Generator) -> np.ndarray:
    t, l, ch, cw = random_resized_crop_box(img.shape[0], img.shape[1], scale, ratio, rng)
    # INTER_AREA when shrinking a lot would be nicer, but bilinear is what the reference pipeline uses.
    return cv2.resize(img[t:t + ch, l:l + cw], (size, size), interpolation=cv2.INTER_LINEAR)


def grid_windows(img: np.ndarray, patch: int, step: int) -> np.ndarray:
    """Row-major grid of patch x patch windows every `step` pixels: [N, patch, patch, C] (a copy)."""
    h, w = img.shape[:2]
    if h < patch or w < patch:
        raise ConfigError(None, f"frame {w}x{h} is smaller than the patch size {patch}")
    ys = range(0, h - patch + 1, step)
    xs = range(0, w - patch + 1, step)
    return np.stack([img[y:y + patch, x:x + patch] for y in ys for x in xs])


def grid_side(frame_size: int, patch: int, step: int) -> int:
    return (frame_size - patch) // step + 1


def normalize(x: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W], (x/255 - mean) / std."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    t = (t - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)
    return t.movedim(-1, -3).contiguous()


def rgb_to_lab(img: np.ndarray) -> np.ndarray:
    """OpenCV float Lab (L in [0, 100]) of an RGB uint8 image: the convention of MAST/LIIR/STT (spec §11a-14)."""
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def channel_dropout(lab: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> tuple[np.ndarray, int]:
    """Zero one of the three Lab channels with probability p (ContrastCorr/LIIR-style input dropout);
    returns the image and the dropped channel (-1 when none), which the loss needs as its target."""
    if rng.uniform() >= p:
        return lab, -1
    c = int(rng.integers(0, 3))
    out = lab.copy()
    out[..., c] = 0.0
    return out, c


# -- pipelines: clip (list of RGB frames) -> dict of tensors ------------------------------------

@dataclass
class CrwPatches:
    """Spec §3.1: per-frame RandomResizedCrop, a grid of overlapping patches, per-patch jitter.

    Output "clips": float32 [T, N, 3, patch, patch] with N = grid_side**2 in row-major order.
    """
    frame_size: int = 256
    frame_scale: tuple = (0.8, 0.95)
    frame_ratio: tuple = (0.7, 1.3)
    patch_size: int = 64
    patch_stride: int = 32
    patch_scale: tuple = (0.7, 0.9)
    patch_ratio: tuple = (0.75, 4 / 3)
    patch_jitter: bool = True
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    @property
    def grid(self) -> int:
        return grid_side(self.frame_size, self.patch_size, self.patch_stride)

    def __call__(self, frames: list[np.ndarray], rng: np.random.Generator) -> dict:
        out = []
        for f in frames:   # each frame draws its own crop: CRW's frame-level jitter (MapTransform)
            img = random_resized_crop(f, self.frame_size, self.frame_scale, self.frame_ratio, rng)
            patches = grid_windows(img, self.patch_size, self.patch_stride)
            if self.patch_jitter:
                patches = np.stack([random_resized_crop(p, self.patch_size, self.patch_scale, self.patch_ratio, rng)
                                    for p in patches])
            out.append(patches)
        return {"clips": normalize(np.stack(out), self.mean, self.std)}


@dataclass
class Frames:
    """Whole frames, one crop per clip (the reconstruction family compares frames of one view)."""
    frame_size: int = 256
    frame_scale: tuple = (0.8, 1.0)
    frame_ratio: tuple = (0.75, 4 / 3)
    colour: str = "rgb"                 # "rgb" | "lab" | "lab8"
    channel_dropout: float = 0.0        # Lab only: probability of zeroing one channel per clip
    flip: float = 0.0                   # probability of a horizontal flip of the whole clip
    also_rgb: bool = False              # Lab only: also "rgb", ImageNet-normalised (STT's teacher input)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __call__(self, frames: list[np.ndarray], rng: np.random.Generator) -> dict:
        h, w = frames[0].shape[:2]
        t, l, ch, cw = random_resized_crop_box(h, w, self.frame_scale, self.frame_ratio, rng)
        crops = [cv2.resize(f[t:t + ch, l:l + cw], (self.frame_size, self.frame_size),
                            interpolation=cv2.INTER_LINEAR) for f in frames]
        if self.flip > 0 and rng.uniform() < self.flip:
            crops = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
        if self.colour == "rgb":
            return {"clips": normalize(np.stack(crops), self.mean, self.std)}
        if self.colour == "lab8":    # UVC's auto-encoder input: OpenCV 8-bit Lab in [-1, 1]
            from .methods.uvc_parts import lab8
            return {"clips": torch.stack([lab8(c) for c in crops])}
        labs = np.stack([rgb_to_lab(c) for c in crops])
        target = torch.from_numpy(labs).movedim(-1, -3).contiguous()
        dropped = -1
        if self.channel_dropout > 0:
            labs, dropped = channel_dropout(labs, rng, self.channel_dropout)
        x = (torch.from_numpy(np.ascontiguousarray(labs)) - torch.tensor(self.mean)) / torch.tensor(self.std)
        out = {"clips": x.movedim(-1, -3).contiguous().float(), "lab": target,
               "dropped_channel": torch.tensor(dropped)}
        if self.also_rgb:
            out["rgb"] = normalize(np.stack(crops), IMAGENET_MEAN, IMAGENET_STD)
        return out


@dataclass
class TwoViews:
    """Two independently augmented views of each frame (MoCo v2's recipe, spec §9.1): RandomResizedCrop
    (scale 0.2-1), colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, greyscale p 0.2, Gaussian blur
    sigma in [0.1, 2] with p 0.5, horizontal flip.  Output "views": [T, 2, 3, S, S] (every frame of
    the clip is an image of its own)."""
    frame_size: int = 224
    scale: tuple = (0.2, 1.0)
    ratio: tuple = (0.75, 4 / 3)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def view(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = random_resized_crop(img, self.frame_size, self.scale, self.ratio, rng).astype(np.float32)
        if rng.uniform() < 0.8:
            x = colour_jitter(x, rng, 0.4, 0.4, 0.4, 0.1)
        if rng.uniform() < 0.2:
            x = np.repeat(x @ LUMA[:, None], 3, axis=-1)
        if rng.uniform() < 0.5:
            x = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.1, 2.0)))
        if rng.uniform() < 0.5:
            x = x[:, ::-1]
        return np.clip(x, 0, 255).astype(np.uint8)

    def __call__(self, frames: list[np.ndarray], rng: np.random.Generator) -> dict:
        views = np.stack([np.stack([self.view(f, rng), self.view(f, rng)]) for f in frames])
        return {"views": normalize(views, self.mean, self.std)}


def colour_jitter(x: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float, saturation: float,
                  hue: float) -> np.ndarray:
    """float RGB [0, 255]: the four jitters in a random order, as torchvision's ColorJitter."""
    for op in rng.permutation(4):
        if op == 0:
            x = x * rng.uniform(1 - brightness, 1 + brightness)
        elif op == 1:
            m = float((x @ LUMA).mean())
            x = (x - m) * rng.uniform(1 - contrast, 1 + contrast) + m
        elif op == 2:
            g = (x @ LUMA)[..., None]
            x = (x - g) * rng.uniform(1 - saturation, 1 + saturation) + g
        else:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.int32)
            hsv[..., 0] = (hsv[..., 0] + int(round(rng.uniform(-hue, hue) * 180))) % 180
            x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        x = np.clip(x, 0, 255)
    return x


@dataclass
class UvcPair:
    """A (reference, target) pair for UVC/ContrastCorr (spec §6.5-6.6), 8-bit Lab in [-1, 1]:
    "ref_lab" a patch_size crop of the reference, "tgt_lab" an independent crop of the target (warm-up),
    "tgt_full_lab" the whole target resized to target_size (the joint phase searches it); both frames
    first resized to target_size and flipped together.  Not reproduced: the shared +-10 degree
    rotation and 1.2 rescale, and ResizeandPad's aspect-keeping padding (frames are squashed)."""
    patch_size: int = 256
    target_size: int = 640
    flip: float = 0.5
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __call__(self, frames: list[np.ndarray], rng: np.random.Generator) -> dict:
        t = self.target_size
        ref, tgt = (cv2.resize(f, (t, t), interpolation=cv2.INTER_AREA) for f in frames[:2])
        if rng.uniform() < self.flip:
            ref, tgt = np.ascontiguousarray(ref[:, ::-1]), np.ascontiguousarray(tgt[:, ::-1])
        s = self.patch_size

        def crop(img):
            y, x = (int(rng.integers(0, t - s + 1)) for _ in range(2))
            return np.ascontiguousarray(img[y:y + s, x:x + s])

        from .methods.uvc_parts import lab8
        return {"ref_lab": lab8(crop(ref)), "tgt_lab": lab8(crop(tgt)), "tgt_full_lab": lab8(tgt)}


PIPELINES: dict[str, Callable[..., object]] = {"crw_patches": CrwPatches, "frames": Frames, "two_views": TwoViews, "uvc_pair": UvcPair}


def build_pipeline(cfg: dict, mean, std):
    """The augmentation named by cfg["name"], with the model spec's normalisation."""
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in PIPELINES:
        raise ConfigError(None, f"unknown augmentation {name!r} (known: {', '.join(PIPELINES)})")
    try:
        return PIPELINES[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()},
                               mean=tuple(mean), std=tuple(std))
    except TypeError as exc:
        raise ConfigError(None, f"augmentation {name!r}: {exc}") from None
