"""Published checkpoint layouts (research spec §3.4, §4.4, §6.10, §7.7, §8.5, §9.7) and the fp16
inference checkpoint.

Every official file is rebuilt here with the key names and shapes the spec gives, by renaming the
state dict of one of our encoders with a table written from the spec (not with the importer's own
rules), plus the non-encoder entries the official files carry.  A load is correct when the encoder
that comes back computes exactly what the source encoder computes, and a few tensors sit where the
spec says they belong.  BatchNorm statistics and affines are randomised first: with the default
ones (0/1) every BN is interchangeable and a swapped mapping would go unnoticed.
"""
import argparse
import re
import sys

import numpy as np
import pytest
import torch

from engine.errors import CheckpointError, ConfigError
from engine.models import (MODEL_SPECS, Encoder, LiirResNet18, ModelSpec, ResNet, build_encoder, get_spec,
                           load_encoder, random_encoder, read_checkpoint, save_checkpoint,
                           save_inference_checkpoint)
from engine.models import checkpoints

torch.set_num_threads(2)


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, LiirResNet18):
                m.pos_embed1.copy_(0.3 * torch.randn(m.pos_embed1.shape, generator=g))
    return module


def source_encoder(name: str, seed: int = 0) -> Encoder:
    return randomize(random_encoder(name, seed=seed), seed + 100)


def image(h=40, w=56, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8))


def features(enc: Encoder, rgb: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return enc(enc.preprocess(rgb))


def save(tmp_path, obj, name="ck.pth"):
    p = tmp_path / name
    torch.save(obj, p)
    return p


def rename(sd, table):
    """Apply a test-side (spec-derived) list of (regex, replacement) renames; first match wins."""
    out = {}
    for k, v in sd.items():
        for pat, rep in table:
            if re.match(pat, k):
                k = re.sub(pat, rep, k, count=1)
                break
        out[k] = v.clone()
    return out


def adam_state(params):
    """A real Adam state dict (what the official files store under 'optimizer')."""
    params = [p.detach().clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(params, lr=1e-4)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


def tv_layer4_r18(seed=1):
    """torchvision ResNet-18 layer4 keys/shapes (spec §1.1), which training-time files still carry."""
    return {k: v for k, v in randomize(ResNet("resnet18"), seed).state_dict().items() if k.startswith("layer4.")}


def assert_same_encoder(loaded: Encoder, source: Encoder, name: str):
    assert loaded.spec.name == name and not loaded.training
    rgb = image()
    a, b = features(loaded, rgb), features(source, rgb)
    assert a.shape == b.shape
    assert torch.equal(a, b)


# -- CRW ---------------------------------------------------------------------------------------

def crw_file(src: Encoder, **container):
    # spec §3.4: {'model': CRW.state_dict(), 'optimizer', 'lr_scheduler', 'epoch', 'args'};
    # model keys = encoder.model.<torchvision ResNet-18 key> for conv1..layer4 + selfsim_fc.0.*
    tv = {**src.trunk.state_dict(), **tv_layer4_r18()}
    model = {"encoder.model." + k: v.clone() for k, v in tv.items()}
    model["selfsim_fc.0.weight"] = torch.randn(128, 512)
    model["selfsim_fc.0.bias"] = torch.randn(128)
    lin = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(lin.parameters())
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[20, 30, 40], gamma=0.3)   # holds a Counter
    return {"model": model, "optimizer": adam_state([model["selfsim_fc.0.weight"]]),
            "lr_scheduler": sched.state_dict(), "epoch": 24,
            "args": argparse.Namespace(model_type="scratch", temp=0.05, remove_layers=[], head_depth=0),
            **container}


def test_crw_layout(tmp_path):
    src = source_encoder("crw-r18-s8", 1)
    obj = crw_file(src)
    path = save(tmp_path, obj)
    enc = load_encoder(path)
    assert_same_encoder(enc, src, "crw-r18-s8")
    assert torch.equal(enc.trunk.layer3[1].bn2.running_var, obj["model"]["encoder.model.layer3.1.bn2.running_var"])
    assert "selfsim_fc.* (2)" in enc.source and "model_type='scratch'" in enc.source
    # DataParallel-wrapped, no args, the older padded-conv names that CRW's test.py renames
    old = {("module." + k).replace("layer2.0.conv1.weight", "layer2.0.conv1.1.weight"): v
           for k, v in obj["model"].items()}
    assert "module.encoder.model.layer2.0.conv1.1.weight" in old
    enc = load_encoder(save(tmp_path, {"model": old, "epoch": 3}))
    assert_same_encoder(enc, src, "crw-r18-s8")


# -- MAST --------------------------------------------------------------------------------------

def test_mast_layout(tmp_path):
    src = source_encoder("mast-r18-s4", 2)
    sd = src.trunk.state_dict()
    # spec §4.4: feature_extraction.<MAST ResNet18 names>, post_convolution.{weight,bias}, no module.
    official = {("" if k.startswith("post_convolution.") else "feature_extraction.") + k: v.clone()
                for k, v in sd.items()}
    assert official["feature_extraction.conv1.0.weight"].shape == (64, 3, 7, 7)
    assert official["feature_extraction.layer4.0.left.0.weight"].shape == (256, 256, 3, 3)
    assert {k.split(".shortcut")[0] for k in official if ".shortcut." in k} == \
        {"feature_extraction.layer2.0", "feature_extraction.layer3.0"}
    assert official["post_convolution.weight"].shape == (64, 256, 3, 3)
    path = save(tmp_path, {"epoch": 19, "state_dict": official, "optimizer": adam_state(list(official.values())[:4])})
    enc = load_encoder(path)
    assert_same_encoder(enc, src, "mast-r18-s4")
    assert torch.equal(enc.trunk.post_convolution.bias, official["post_convolution.bias"])
    assert enc.spec.colour == "lab" and enc.spec.protocol == "mast" and enc.spec.radius == 12
    assert enc.spec.topk == 0 and not enc.spec.soft_memory and not enc.spec.l2_normalize


# -- LIIR --------------------------------------------------------------------------------------

# spec §8.3/§8.5: ResNet_hr uses torchvision names under feature_extraction.; ours keeps MAST's.
LIIR_FROM_OURS = [
    (r"^conv1\.0\.", "feature_extraction.conv1."), (r"^conv1\.1\.", "feature_extraction.bn1."),
    (r"^pos_embed1$", "feature_extraction.pos_embed1"),
    (r"^(layer\d\.\d)\.left\.0\.", r"feature_extraction.\1.conv1."),
    (r"^(layer\d\.\d)\.left\.1\.", r"feature_extraction.\1.bn1."),
    (r"^(layer\d\.\d)\.left\.3\.", r"feature_extraction.\1.conv2."),
    (r"^(layer\d\.\d)\.left\.4\.", r"feature_extraction.\1.bn2."),
    (r"^(layer\d\.\d)\.shortcut\.", r"feature_extraction.\1.downsample."),
]


def liir_file(src: Encoder, queue=24):
    official = rename(src.trunk.state_dict(), LIIR_FROM_OURS)
    official.update({
        "conv_semantic.weight": torch.randn(128, 256, 3, 3), "conv_semantic.bias": torch.randn(128),
        "conv_semantic_k.weight": torch.randn(128, 256, 3, 3), "conv_semantic_k.bias": torch.randn(128),
        "colorizer.feats_queue": torch.randn(queue, 128, 32, 32),
        "colorizer.refs_queue": torch.arange(queue), "colorizer.flag": torch.tensor([81]),
    })
    return official


def test_liir_layout(tmp_path):
    src = source_encoder("liir-r18-s4", 3)
    official = liir_file(src)
    # the spec's key list
    assert official["feature_extraction.conv1.weight"].shape == (64, 3, 7, 7)
    assert official["feature_extraction.pos_embed1"].shape == (1, 64, 128, 128)
    assert official["feature_extraction.layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    assert "feature_extraction.layer4.0.downsample.0.weight" not in official        # 256 -> 256, stride 1
    assert official["feature_extraction.layer4.1.conv2.weight"].shape == (256, 256, 3, 3)
    assert official["post_convolution.weight"].shape == (64, 256, 3, 3)
    opt = adam_state([official["post_convolution.bias"]])
    path = save(tmp_path, {"iter": 1000, "state_dict": official, "optimizer": opt})
    enc = load_encoder(path)
    assert_same_encoder(enc, src, "liir-r18-s4")
    assert torch.equal(enc.trunk.layer2[0].shortcut[1].running_var,
                       official["feature_extraction.layer2.0.downsample.1.running_var"])
    assert torch.equal(enc.trunk.pos_embed1, official["feature_extraction.pos_embed1"])
    assert "colorizer.* (3)" in enc.source and "conv_semantic_k.* (2)" in enc.source
    assert enc.spec.compact_prior and enc.spec.radius == 14 and enc.spec.colour == "lab"
    # an embedding trained at another size still loads (spec §11b-33); the spec records its size
    small = source_encoder("liir-r18-s4", 4)
    with torch.no_grad():
        small.trunk.pos_embed1 = torch.nn.Parameter(torch.randn(1, 64, 64, 64))
    enc = load_encoder(save(tmp_path, {"epoch": 5, "state_dict": liir_file(small, queue=2)}))
    assert enc.spec.pos_embed == 64 and torch.equal(features(enc, image()), features(small, image()))


def test_liir_position_embedding_is_added_after_the_stem():
    liir = source_encoder("liir-r18-s4", 5)
    mast = build_encoder("mast-r18-s4")
    mast.trunk.load_state_dict({k: v for k, v in liir.trunk.state_dict().items() if k != "pos_embed1"})
    with torch.no_grad():
        liir.trunk.pos_embed1.zero_()
    assert torch.equal(features(liir, image()), features(mast, image()))   # PE 0: exactly MAST
    with torch.no_grad():
        liir.trunk.pos_embed1.fill_(1.0)           # a constant PE = a constant added after conv1-bn-relu
    x = liir.preprocess(image())
    with torch.inference_mode():
        stem = mast.trunk.conv1(x) + 1.0
        for name in ("layer1", "layer2", "layer3", "layer4"):
            stem = getattr(mast.trunk, name)(stem)
        want = mast.trunk.post_convolution(stem)
    got = features(liir, image())          # bicubic resizing of a constant is 1 only up to float rounding
    assert (got - want).abs().max() < 1e-5 * want.abs().max()


# -- UVC / ContrastCorr ------------------------------------------------------------------------

def uvc_file(src: Encoder, epoch):
    # spec §6.10: {'epoch', 'state_dict', 'best_loss'}, DataParallel keys module.gray_encoder.<tv key>
    # (layer1-4, no fc), module.rgb_encoder.*/module.decoder.* (shapes §6.3), module.normalize.*
    sd = {"module.gray_encoder." + k: v.clone() for k, v in src.trunk.state_dict().items()}
    ae = {"rgb_encoder.conv1": (3, 3, 1), "rgb_encoder.conv2": (64, 3, 3), "rgb_encoder.conv3": (64, 64, 3),
          "rgb_encoder.conv4": (128, 64, 3), "rgb_encoder.conv5": (128, 128, 3), "rgb_encoder.conv6": (256, 128, 3),
          "rgb_encoder.downsample.1": (256, 256, 1), "decoder.upsample.1": (256, 256, 1),
          "decoder.conv7": (128, 256, 3), "decoder.conv8": (128, 128, 3), "decoder.conv9": (64, 128, 3),
          "decoder.conv10": (64, 64, 3), "decoder.conv11": (3, 64, 3)}
    for name, (co, ci, k) in ae.items():
        sd[f"module.{name}.weight"] = torch.randn(co, ci, k, k)
        sd[f"module.{name}.bias"] = torch.randn(co)
    sd["module.normalize.mean"] = torch.tensor([0.485, 0.456, 0.406])
    sd["module.normalize.std"] = torch.tensor([0.229, 0.224, 0.225])
    return {"epoch": epoch, "state_dict": sd, "best_loss": 0.4321}


def test_uvc_and_contrastcorr_layout(tmp_path):
    src = source_encoder("uvc-r18-s8", 6)
    obj = uvc_file(src, epoch=29)
    assert obj["state_dict"]["module.gray_encoder.layer4.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert obj["state_dict"]["module.gray_encoder.layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    path = save(tmp_path, obj)
    enc = load_encoder(path)
    assert_same_encoder(enc, src, "uvc-r18-s8")
    assert features(enc, image()).shape[1] == 512                        # layer4, not L2-normalised
    assert torch.equal(enc.trunk.layer4[1].conv2.weight, obj["state_dict"]["module.gray_encoder.layer4.1.conv2.weight"])
    assert "rgb_encoder.* (14)" in enc.source and "decoder.* (12)" in enc.source and "normalize.* (2)" in enc.source
    assert (enc.spec.colour, enc.spec.topk, enc.spec.context, enc.spec.temperature, enc.spec.window) == \
        ("lab8-l", 5, 7, 1.0, "none")
    # ContrastCorr writes the same keys; its 200-epoch schedule tells the released file apart
    cc = load_encoder(save(tmp_path, uvc_file(src, epoch=199), "cc.pth.tar"))
    assert cc.spec.name == "contrastcorr-r18-s8" and cc.spec.colour == "lab8" and cc.spec.affinity == "mutual"
    assert cc.spec.short_side == 560 and torch.equal(cc.trunk.conv1.weight, enc.trunk.conv1.weight)
    # ... and the user can always say which it is
    assert load_encoder(tmp_path / "cc.pth.tar", model="uvc-r18-s8").spec.name == "uvc-r18-s8"
    assert load_encoder(path, model="contrastcorr-r18-s8").spec.name == "contrastcorr-r18-s8"


def test_uvc_lab_inputs_match_opencv():
    cv2 = pytest.importorskip("cv2")
    rgb = image(24, 32, seed=7)
    lab8 = cv2.cvtColor(rgb[0].numpy(), cv2.COLOR_RGB2Lab).astype(np.float64)   # uint8 Lab, as UVC reads it
    x = (lab8 - 128) / 128                                                         # UVC's Normalize
    x = ((x + 1) / 2 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    step = 1 / 256 / 0.224                                                         # one 8-bit Lab level
    got = build_encoder("contrastcorr-r18-s8").preprocess(rgb)[0].permute(1, 2, 0).numpy()
    # OpenCV's 8-bit path uses fixed-point tables: ~10% of values round to the neighbouring level
    diff = np.abs(got - x)
    assert diff.max() <= step * 1.01 and diff.mean() < 0.15 * step
    gray = build_encoder("uvc-r18-s8").preprocess(rgb)[0].permute(1, 2, 0).numpy()
    lx = (lab8[..., :1] / 256 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.abs(gray - lx).max() <= 1 / 256 / 0.224 * 1.01                       # L channel x3


# -- STT ---------------------------------------------------------------------------------------

# spec §9.7: MMCV ConvModule names (the inverse of MMCV's _load_torchvision_checkpoint)
MMCV_FROM_TV = [
    (r"^conv1\.", "conv1.conv."), (r"^bn1\.", "conv1.bn."),
    (r"^(layer\d\.\d)\.downsample\.0\.", r"\1.downsample.conv."),
    (r"^(layer\d\.\d)\.downsample\.1\.", r"\1.downsample.bn."),
    (r"^(layer\d\.\d)\.conv(\d)\.", r"\1.conv\2.conv."), (r"^(layer\d\.\d)\.bn(\d)\.", r"\1.conv\2.bn."),
]


def stt_file(src: Encoder):
    student = rename({**src.trunk.state_dict(), **tv_layer4_r18(8)}, MMCV_FROM_TV)
    teacher = rename(randomize(ResNet("resnet18"), 9).state_dict(), MMCV_FROM_TV)
    sd = {**{"backbone." + k: v for k, v in student.items()}, **{"backbone_t." + k: v for k, v in teacher.items()}}
    meta = {"epoch": 800, "iter": 43200, "mmcv_version": "1.3.18", "time": "Sun Mar  5 10:00:00 2023",
            "config": "model = dict(type='Framework', backbone=dict(type='ResNet', depth=18, strides=(1, 2, 2, 4)))"}
    return {"meta": meta, "state_dict": sd, "optimizer": adam_state([sd["backbone.conv1.conv.weight"]])}


def test_stt_layout(tmp_path):
    src = source_encoder("stt-r18-s8", 10)
    obj = stt_file(src)
    sd = obj["state_dict"]
    assert sd["backbone.conv1.conv.weight"].shape == (64, 3, 7, 7) and "backbone.conv1.bn.running_var" in sd
    assert sd["backbone.layer3.0.downsample.conv.weight"].shape == (256, 128, 1, 1)
    assert sd["backbone.layer2.1.conv2.bn.weight"].shape == (128,) and "backbone.layer2.1.bn2.weight" not in sd
    path = save(tmp_path, obj)
    enc = load_encoder(path)
    assert_same_encoder(enc, src, "stt-r18-s8")
    assert torch.equal(enc.trunk.layer2[1].bn2.weight, sd["backbone.layer2.1.conv2.bn.weight"])   # not the teacher's
    assert not torch.equal(enc.trunk.layer2[1].bn2.weight, sd["backbone_t.layer2.1.conv2.bn.weight"])
    assert "backbone_t.*" in enc.source and "stride 8 assumed" in enc.source
    assert (enc.spec.colour, enc.spec.temperature, enc.spec.topk, enc.spec.window, enc.spec.l2_normalize) == \
        ("lab", 0.07, 10, "square", True)
    # the test model (VanillaTracker) under DataParallel: module. prefix and an `iteration` buffer
    tracker = {"module." + k: v for k, v in sd.items() if not k.startswith("backbone_t.")}
    tracker["module.iteration"] = torch.tensor(0)
    assert_same_encoder(load_encoder(save(tmp_path, {"state_dict": tracker}, "t.pth")), src, "stt-r18-s8")
    # stride 4 has the same keys; the user selects it
    s4 = load_encoder(path, model="stt-r18-s4")
    assert s4.spec.name == "stt-r18-s4"
    assert torch.equal(s4.trunk.layer3[1].conv1.weight, enc.trunk.layer3[1].conv1.weight)
    assert features(s4, image()).shape[-2:] == (10, 14) and features(enc, image()).shape[-2:] == (5, 7)


def test_stt_stems():
    s8, s4 = build_encoder("stt-r18-s8").trunk, build_encoder("stt-r18-s4").trunk
    pools = lambda t: [m for m in t.modules() if isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d))]  # noqa: E731
    assert pools(s8) == [] and s8.layer2[0].conv1.stride == (2, 2) and s8.layer3[0].conv1.stride == (2, 2)
    (avg,) = pools(s4)
    assert isinstance(avg, torch.nn.AvgPool2d) and (avg.kernel_size, avg.stride, avg.padding) == (3, 2, 1)
    assert avg.count_include_pad and all(b.conv1.stride == (1, 1) for b in (s4.layer2[0], s4.layer3[0]))
    assert not hasattr(s8, "layer4") and get_spec("stt-r50-s8").channels == 1024


# -- errors ------------------------------------------------------------------------------------

class Payload:
    pass


def test_unknown_layout_lists_keys_and_layouts(tmp_path):
    sd = {"trunk.stem.weight": torch.zeros(2), "trunk.blocks.0.weight": torch.zeros(2)}
    with pytest.raises(CheckpointError) as e:
        load_encoder(save(tmp_path, {"state_dict": sd, "epoch": 1}))
    msg = str(e.value)
    assert str(tmp_path / "ck.pth") in msg
    assert "trunk.stem.weight" in msg and "trunk.blocks.0.weight" in msg
    for lay in ("crw (encoder.model.*)", "mast (feature_extraction.conv1.0.weight)",
                "liir (feature_extraction.pos_embed1)", "uvc (gray_encoder.conv1.weight)",
                "stt (backbone.conv1.conv.weight)", "pass model=NAME"):
        assert lay in msg


def test_shape_mismatch_and_missing_keys_use_the_files_names(tmp_path):
    src = source_encoder("uvc-r18-s8", 11)
    obj = uvc_file(src, epoch=29)
    obj["state_dict"]["module.gray_encoder.layer3.0.conv1.weight"] = torch.zeros(256, 128, 5, 5)
    with pytest.raises(CheckpointError, match=r"1 shape mismatches .*layer3\.0\.conv1\.weight \(file: "
                                              r"gray_encoder\.layer3\.0\.conv1\.weight\) \(256, 128, 5, 5\) vs "
                                              r"\(256, 128, 3, 3\)"):
        load_encoder(save(tmp_path, obj))
    official = liir_file(source_encoder("liir-r18-s4", 12), queue=1)
    del official["feature_extraction.layer2.0.downsample.1.running_var"]
    official["feature_extraction.layer1.0.conv3.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        load_encoder(save(tmp_path, {"state_dict": official}))
    msg = e.value.reason
    assert ("1 missing keys [layer2.0.shortcut.1.running_var "
            "(file: feature_extraction.layer2.0.downsample.1.running_var)]") in msg
    assert "1 unexpected keys [layer1.0.conv3.weight (file: feature_extraction.layer1.0.conv3.weight)]" in msg
    assert "LIIR" in msg and "Traceback" not in msg
    # a published layout loaded as the wrong model says so, precisely
    with pytest.raises(CheckpointError, match=r"does not fit model 'mast-r18-s4'.*missing keys"):
        load_encoder(save(tmp_path, uvc_file(src, epoch=1)), model="mast-r18-s4")


def test_pickled_objects_are_refused(tmp_path):
    obj = uvc_file(source_encoder("uvc-r18-s8", 13), epoch=29)
    obj["best_loss"] = Payload()
    with pytest.raises(CheckpointError, match=r"refused: contains pickled objects other than tensors .*Payload"):
        load_encoder(save(tmp_path, obj))
    with pytest.raises(CheckpointError, match="refused"):
        load_encoder(save(tmp_path, {"state_dict": {"conv1.weight": torch.zeros(1)}, "meta": {"hook": print}}))


# -- specs: protocol hints ---------------------------------------------------------------------

def test_protocol_hints_and_old_spec_dicts():
    for spec in MODEL_SPECS.values():
        assert ModelSpec.from_dict(spec.to_dict()) == spec
        assert set(spec.protocol_hints()) >= {"protocol", "temperature", "topk", "context", "radius", "window"}
    # a spec saved before the hint fields existed keeps its protocol's meaning
    old = {k: v for k, v in get_spec("mast-r18-s4").to_dict().items()
           if k in ("name", "arch", "layer_strides", "reflect_padding", "out_layer", "stride", "channels",
                    "l2_normalize", "colour", "mean", "std", "protocol", "temperature", "description")}
    assert ModelSpec.from_dict(old) == get_spec("mast-r18-s4")
    with pytest.raises(ConfigError, match="window must be one of"):
        ModelSpec(**{**get_spec("stt-r18-s8").to_dict(), "window": "diamond"})
    with pytest.raises(ConfigError, match="stride 8 does not match"):   # no stem pool halves the stride
        ModelSpec(**{**get_spec("stt-r18-s8").to_dict(), "stem_pool": "max"})
    with pytest.raises(ConfigError, match="pos_embed"):
        ModelSpec(**{**get_spec("liir-r18-s4").to_dict(), "pos_embed": 0})


# -- fp16 inference checkpoints and the shipped default ----------------------------------------

def test_inference_checkpoint_is_half_and_inference_layers_only(tmp_path):
    spec = get_spec("crw-r18-s8")
    ref = source_encoder("crw-r18-s8", 14)
    # a training-time trunk that still has layer4 (CRW trains with it, spec §1.2)
    train = Encoder(spec, ResNet("resnet18", spec.layer_strides, True, "layer4"))
    train.trunk.load_state_dict({**ref.trunk.state_dict(), **tv_layer4_r18(15)})
    card = {"method": "crw", "data": {"videos": 12}, "steps": 1000, "metrics": {"davis16_val_JF": 0.5},
            "limits": "trained on 12 clips"}
    small, full = tmp_path / "default.pt", tmp_path / "fp32.pt"
    save_inference_checkpoint(train, small, card)
    save_checkpoint(full, ref, "crw")
    raw = torch.load(small, weights_only=True)
    assert not any(k.startswith("layer4.") for k in raw["state_dict"])
    assert raw["state_dict"]["layer3.1.conv2.weight"].dtype == torch.float16
    assert raw["state_dict"]["layer3.1.bn2.running_var"].dtype == torch.float32
    assert small.stat().st_size < 0.55 * full.stat().st_size
    enc = load_encoder(small)
    assert enc.spec == spec and all(p.dtype == torch.float32 for p in enc.trunk.parameters())
    assert "fp16" in enc.source
    a, b = features(enc, image()), features(ref, image())
    assert (a - b).abs().max() < 5e-3 and ((a * b).sum(1) > 0.9999).all()   # unit vectors, fp16 weights
    meta = read_checkpoint(small)
    assert meta["card"] == card and meta["method"] == "crw" and meta["metrics"] == {"davis16_val_JF": 0.5}
    with pytest.raises(ConfigError, match="plain values"):
        save_inference_checkpoint(ref, tmp_path / "bad.pt", {"path": tmp_path})
    with pytest.raises(ConfigError, match="does not match its spec"):
        save_inference_checkpoint(Encoder(spec, ResNet("resnet18", spec.layer_strides, True, "layer2")),
                                  tmp_path / "bad.pt", {})


def test_default_checkpoint_path_and_fp16_default(tmp_path, monkeypatch):
    path = checkpoints.default_checkpoint_path()
    assert path.parts[-3:] == ("resources", "models", "default.pt")
    monkeypatch.setitem(sys.modules, "resources", None)          # an install without package data
    assert checkpoints.default_checkpoint_path() == path
    monkeypatch.setattr(checkpoints, "default_checkpoint_path", lambda: tmp_path / "models" / "default.pt")
    with pytest.raises(CheckpointError, match="no model is available"):
        load_encoder()
    ref = source_encoder("crw-r18-s8", 16)
    save_inference_checkpoint(ref, tmp_path / "models" / "default.pt", {"method": "crw"})
    enc = load_encoder()
    assert enc.spec.name == "crw-r18-s8" and load_encoder(model="crw-r18-s8").spec.name == "crw-r18-s8"
