"""The training data layer: layouts, fps sampling, determinism, corrupt sources, augmentations."""
import warnings

import cv2
import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from tests.videos import write_video
from train.augment import CrwPatches, Frames, grid_windows, random_resized_crop_box
from train.data import ClipDataset, StepBatchSampler, build_index, clip_frames, find_sources


def _frames(folder, n, size=(64, 48), seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def layouts(tmp_path):
    root = tmp_path / "data"
    _frames(root / "davis" / "bear" / "JPEGImages", 6)                          # DAVIS (ours)
    (root / "davis" / "bear" / "Annotations").mkdir()
    for i in range(6):
        cv2.imwrite(str(root / "davis" / "bear" / "Annotations" / f"{i:05d}.png"), np.zeros((48, 64), np.uint8))
    _frames(root / "official" / "JPEGImages" / "480p" / "cows", 5)             # DAVIS (official)
    _frames(root / "official" / "JPEGImages" / "Full-Resolution" / "cows", 5)  # skipped beside 480p
    _frames(root / "ytvos" / "train" / "JPEGImages" / "0a1b2c", 5)             # YouTube-VOS
    (root / "kinetics" / "train_256" / "abseiling").mkdir(parents=True)         # Kinetics videos
    write_video(root / "kinetics" / "train_256" / "abseiling" / "a.mp4", n=40, fps=24)
    (root / "kinetics" / "train_256" / "abseiling" / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    _frames(root / "kinetics_frames" / "juggling" / "vid1", 4)                  # Kinetics frames
    return root


def test_sources_are_found_in_every_layout_and_corrupt_ones_skipped_with_a_warning(layouts):
    videos, folders = find_sources(layouts)
    names = sorted(str(f.relative_to(layouts)) for f in folders)
    assert names == ["davis/bear/JPEGImages", "kinetics_frames/juggling/vid1", "official/JPEGImages/480p/cows",
                     "ytvos/train/JPEGImages/0a1b2c"]
    assert [v.name for v in videos] == ["a.mp4", "broken.mp4"]
    with pytest.warns(UserWarning, match="broken.mp4"):
        sources, skipped = build_index(layouts, clip_len=5)
    assert [s.n_frames for s in sources if s.kind == "video"] == [40]
    assert {s["path"].rsplit("/", 1)[-1] for s in skipped} == {"broken.mp4", "vid1"}   # vid1: 4 < 5 frames
    with pytest.raises(ConfigError):
        build_index(layouts / "nowhere", clip_len=2)


def test_clip_frames_follow_the_frame_rate_and_shrink_the_step_to_fit():
    rng = np.random.default_rng(0)
    idx = clip_frames(300, 30.0, 4, 8.0, rng)          # 30 fps -> 8 fps: every 4th frame
    assert np.diff(idx).tolist() == [4, 4, 4]
    idx = clip_frames(8, 30.0, 4, 8.0, rng)            # too short for step 4: step 2
    assert np.diff(idx).tolist() == [2, 2, 2] and idx[-1] < 8
    with pytest.raises(ValueError):
        clip_frames(3, 30.0, 4, 8.0, rng)


def test_clips_are_a_function_of_the_sample_index(layouts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources, _ = build_index(layouts, clip_len=3)
    aug = CrwPatches(frame_size=64, patch_size=32, patch_stride=16)
    ds = ClipDataset(sources, 3, 8.0, aug, seed=7, clips_per_video=2)
    a, b = ds[5], ClipDataset(sources, 3, 8.0, aug, seed=7, clips_per_video=2)[5]
    assert a["clips"].shape == (3, 9, 3, 32, 32) and a["clips"].dtype == torch.float32
    assert torch.equal(a["clips"], b["clips"]) and a["seed"] == b["seed"]
    assert not torch.equal(a["clips"], ds[6]["clips"])
    # An epoch visits every source clips_per_video times.
    assert sorted(ds.source_of(i) for i in range(ds.epoch_size)) == sorted(list(range(len(sources))) * 2)


def test_a_source_that_breaks_after_indexing_is_replaced_with_a_warning(layouts, tmp_path):
    video = tmp_path / "v.mp4"
    write_video(video, n=30, fps=24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources, _ = build_index(layouts, clip_len=3)
        good = sources + build_index(video, clip_len=3)[0]
    video.write_bytes(b"garbage" * 100)                 # corrupted after indexing
    ds = ClipDataset(good, 3, 8.0, CrwPatches(frame_size=64, patch_size=32, patch_stride=16), clips_per_video=1)
    bad = next(i for i in range(ds.epoch_size) if ds.sources[ds.source_of(i)].path == str(video))
    with pytest.warns(UserWarning, match="v.mp4"):
        item = ds[bad]
    assert item["clips"].shape[0] == 3
    ds2 = ClipDataset(good, 3, 8.0, CrwPatches(frame_size=64, patch_size=32, patch_stride=16), clips_per_video=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(ds2[bad]["clips"], item["clips"])   # the replacement is deterministic too


def test_ranks_split_the_global_batch_without_overlap():
    one = iter(StepBatchSampler(4, 0, 1, start_step=3))
    r0, r1 = iter(StepBatchSampler(2, 0, 2, start_step=3)), iter(StepBatchSampler(2, 1, 2, start_step=3))
    for _ in range(3):
        assert next(one) == next(r0) + next(r1)
    assert list(StepBatchSampler(2, 0, 1, start_step=1, max_steps=3)) == [[2, 3], [4, 5]]


def test_crw_patch_grid_and_crops():
    img = np.arange(256 * 256 * 3, dtype=np.uint32).reshape(256, 256, 3).astype(np.uint8)
    win = grid_windows(img, 64, 32)
    assert win.shape == (49, 64, 64, 3)                 # 7x7, 50 % overlap (spec §3.1)
    assert np.array_equal(win[8], img[32:96, 32:96])    # row-major: node 8 = row 1, column 1
    rng = np.random.default_rng(0)
    for _ in range(50):
        t, l, h, w = random_resized_crop_box(100, 200, (0.8, 0.95), (0.7, 1.3), rng)
        assert 0 <= t and t + h <= 100 and 0 <= l and l + w <= 200
        assert 0.79 * 20000 <= h * w <= 0.96 * 20000 or (h, w) == (100, 130)
    frames = [np.full((120, 160, 3), 128, np.uint8)] * 2
    out = CrwPatches()(frames, rng)["clips"]
    assert out.shape == (2, 49, 3, 64, 64)
    # ImageNet statistics, as the engine's preprocessing at test time.
    assert out[0, 0, 0, 0, 0].item() == pytest.approx((128 / 255 - 0.485) / 0.229, abs=1e-5)


def test_lab_frames_with_channel_dropout():
    rng = np.random.default_rng(3)
    frames = [np.random.default_rng(i).integers(0, 255, (80, 100, 3), dtype=np.uint8) for i in range(2)]
    aug = Frames(frame_size=32, colour="lab", channel_dropout=1.0, mean=(50.0, 0.0, 0.0), std=(50.0, 127.0, 127.0))
    out = aug(frames, rng)
    c = int(out["dropped_channel"])
    assert out["clips"].shape == (2, 3, 32, 32) and 0 <= c < 3
    assert torch.allclose(out["clips"][:, c], torch.full((2, 32, 32), -aug.mean[c] / aug.std[c]))
    assert out["lab"][:, 0].max() <= 100.0 + 1e-3      # OpenCV float Lab, L in [0, 100]
