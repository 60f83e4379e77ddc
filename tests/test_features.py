"""engine.features: extraction path, reduced precision vs fp32, the bounded cache, processing size."""
import cv2
import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.features import (FeatureExtractor, cpu_has_fast_bf16, processing_size, resize_frame,
                             resolve_precision)
from engine.models import load_encoder, random_encoder


@pytest.fixture(scope="module")
def small_encoder():
    return random_encoder("crw-r18-s8", seed=0)


def frames(n, h=64, w=48, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


# -- processing size -----------------------------------------------------------------------

def test_processing_size():
    assert processing_size(854, 480) == (854, 480)
    assert processing_size(854, 480, max_side=1280) == (854, 480)
    assert processing_size(1920, 1080, max_side=1280) == (1280, 720)
    assert processing_size(1080, 1920, max_side=1280) == (720, 1280)
    assert processing_size(854, 480, scale=0.5) == (427, 240)
    assert processing_size(1920, 1080, max_side=1280, scale=0.5) == (640, 360)
    assert processing_size(3, 2, scale=0.1) == (1, 1)
    for bad in [dict(w=0, h=5), dict(w=5, h=5, scale=0), dict(w=5, h=5, max_side=0)]:
        with pytest.raises(ConfigError):
            processing_size(**bad)


def test_resize_frame():
    f = frames(1, 48, 64)[0]
    assert resize_frame(f, (64, 48)) is f
    out = resize_frame(f, (32, 24))
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert np.array_equal(out, cv2.resize(f, (32, 24), interpolation=cv2.INTER_AREA))


# -- extraction ----------------------------------------------------------------------------

def test_extract_shapes_batching_and_validation(small_encoder):
    fx = FeatureExtractor(small_encoder, device="cpu", precision="fp32", batch_size=2)
    assert fx.device == torch.device("cpu") and fx.precision == "fp32"
    fs = frames(3, 65, 47)
    out = fx.extract(fs)
    assert out.dtype == torch.float32 and tuple(out.shape) == (3, 256, 9, 6)
    one = torch.cat([fx.extract([f]) for f in fs])
    assert torch.allclose(out, one, atol=1e-6)
    assert torch.allclose(out.norm(dim=1), torch.ones(()), atol=1e-5)
    with pytest.raises(ConfigError, match="uint8"):
        fx.extract([fs[0].astype(np.float32)])
    with pytest.raises(ConfigError, match="share a size"):
        fx.extract([fs[0], frames(1, 64, 64)[0]])
    with pytest.raises(ConfigError, match="too small"):
        fx.extract(frames(1, 8, 64))
    with pytest.raises(ConfigError):
        FeatureExtractor(small_encoder, device="cpu", precision="fp64")


def test_auto_precision_on_cpu():
    dev = torch.device("cpu")
    assert resolve_precision("auto", dev) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert resolve_precision("fp32", dev) == "fp32"


@pytest.fixture(scope="module")
def golden(shared):
    from PIL import Image
    g = shared / "golden" / "crw_propagation"
    rgb = np.array(Image.open(g / "inputs/blackswan/JPEGImages/00000.jpg").convert("RGB"))
    feat = torch.from_numpy(np.load(g / "features/blackswan.npz")["feat_frame0"])
    return load_encoder(g / "encoder_seed0.pt", model="crw-r18-s8"), rgb, feat


@pytest.mark.shared
def test_fp32_extractor_matches_golden(golden):
    enc, rgb, feat = golden
    got = FeatureExtractor(enc, device="cpu", precision="fp32").extract([rgb])[0]
    assert float((got - feat).abs().max()) <= 1e-5


@pytest.mark.shared
def test_bf16_close_to_fp32(golden):
    enc, rgb, feat = golden
    fx = FeatureExtractor(enc, device="cpu", precision="bf16")
    got = fx.extract([rgb])[0]
    assert got.dtype == torch.float32
    assert torch.allclose(got.norm(dim=0), torch.ones(()), atol=1e-5)   # re-normalised in fp32
    cos = (got * feat).sum(0)
    print(f"bf16 vs fp32 cosine per cell: min {cos.min():.5f} mean {cos.mean():.6f}")
    assert float(cos.min()) >= 0.99
    # the shared encoder is now channels-last; an fp32 extractor must still give the reference
    fp32 = FeatureExtractor(enc, device="cpu", precision="fp32").extract([rgb])[0]
    assert float((fp32 - feat).abs().max()) <= 1e-5


# -- cache ---------------------------------------------------------------------------------

def test_cache_hits_and_misses(small_encoder, monkeypatch):
    fx = FeatureExtractor(small_encoder, device="cpu", precision="fp32", batch_size=4)
    fs = frames(4)
    a = fx.features("v", 0, fs[0])
    assert fx.features("v", 0, fs[0]) is a and (fx.hits, fx.misses) == (1, 1)
    assert fx.features("w", 0, fs[0]) is not a                       # video is part of the key
    calls = []
    real = fx.extract
    monkeypatch.setattr(fx, "extract", lambda frs: calls.append(len(frs)) or real(frs))
    out = fx.features_batch("v", [(0, fs[0]), (1, fs[1]), (2, fs[2]), (1, fs[1])])
    assert calls == [2]                                                # only the misses, once, in one batch
    assert out[0] is a and out[1] is out[3] and tuple(out[2].shape) == (256, 8, 6)
    assert torch.allclose(out[2], real([fs[2]])[0], atol=1e-6)
    calls.clear()
    fx.features_batch("v", [(2, fs[2]), (1, fs[1])])
    assert calls == []
    fx.clear_cache("v")
    assert len(fx) == 1 and fx.cached_bytes == a.numel() * 4


def test_cache_respects_byte_budget(small_encoder):
    per = 256 * 8 * 6 * 4                                              # one 64x48 frame's features
    fx = FeatureExtractor(small_encoder, device="cpu", precision="fp32", cache_mb=2.5 * per / 2 ** 20)
    fs = frames(4)
    for i in range(3):
        fx.features("v", i, fs[i])
    assert len(fx) == 2 and fx.cached_bytes == 2 * per <= fx.cache_bytes
    b = fx.features("v", 2, fs[2])                                     # hit: most recent
    fx.features("v", 1, fs[1])                                         # hit: refreshes 1
    fx.features("v", 3, fs[3])                                         # evicts 2 (least recent)
    assert fx.features("v", 1, fs[1]) is not None and fx.hits == 3
    assert fx.features("v", 2, fs[2]) is not b                         # was evicted, recomputed
    assert fx.cached_bytes <= fx.cache_bytes
    off = FeatureExtractor(small_encoder, device="cpu", precision="fp32", cache_mb=0)
    off.features("v", 0, fs[0])
    assert len(off) == 0 and off.cached_bytes == 0
