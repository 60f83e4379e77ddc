"""engine.models: torchvision-exact ResNet names/shapes, specs, output sizes, the CRW golden
feature map, and checkpoint loading (our format, plain state dicts, CRW layout, refusals)."""
import argparse
import math

import numpy as np
import pytest
import torch

from engine.errors import CheckpointError, ConfigError
from engine.models import (MODEL_SPECS, Encoder, MastResNet18, ModelSpec, build_encoder, get_spec, load_encoder,
                           random_encoder, read_checkpoint, resnet18, resnet50, save_checkpoint)
from engine.models import checkpoints

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def bn(prefix, c):
    return [(f"{prefix}.{n}", [] if n == "num_batches_tracked" else [c]) for n in BN]


# Research spec §1.1, ResNet-18 table: (block, [(conv, shape)], BN width).  BN order inside a
# block follows the convs (conv1 -> bn1, conv2 -> bn2, downsample.0 -> downsample.1).
R18_TABLE = [
    ("layer1.0", [("conv1", [64, 64, 3, 3]), ("conv2", [64, 64, 3, 3])], 64),
    ("layer1.1", [("conv1", [64, 64, 3, 3]), ("conv2", [64, 64, 3, 3])], 64),
    ("layer2.0", [("conv1", [128, 64, 3, 3]), ("conv2", [128, 128, 3, 3]), ("downsample.0", [128, 64, 1, 1])], 128),
    ("layer2.1", [("conv1", [128, 128, 3, 3]), ("conv2", [128, 128, 3, 3])], 128),
    ("layer3.0", [("conv1", [256, 128, 3, 3]), ("conv2", [256, 256, 3, 3]), ("downsample.0", [256, 128, 1, 1])], 256),
    ("layer3.1", [("conv1", [256, 256, 3, 3]), ("conv2", [256, 256, 3, 3])], 256),
    ("layer4.0", [("conv1", [512, 256, 3, 3]), ("conv2", [512, 512, 3, 3]), ("downsample.0", [512, 256, 1, 1])], 512),
    ("layer4.1", [("conv1", [512, 512, 3, 3]), ("conv2", [512, 512, 3, 3])], 512),
]
# Research spec §1.1, ResNet-50 table: layer, w, out (4w), blocks, block-0 input.
R50_TABLE = [("layer1", 64, 256, 3, 64), ("layer2", 128, 512, 4, 256),
             ("layer3", 256, 1024, 6, 512), ("layer4", 512, 2048, 3, 1024)]
STEM = [("conv1.weight", [64, 3, 7, 7])] + bn("bn1", 64)


def expected_r18(upto="layer4", fc=True):
    out = list(STEM)
    for prefix, convs, c in R18_TABLE:
        if int(prefix[5]) > int(upto[-1]):
            break
        for name, shape in convs:
            out.append((f"{prefix}.{name}.weight", shape))
            out += bn(f"{prefix}.{name[:-1] + '1' if name.startswith('downsample') else 'bn' + name[-1]}", shape[0])
    if fc:
        out += [("fc.weight", [1000, 512]), ("fc.bias", [1000])]
    return out


def expected_r50():
    out = list(STEM)
    for layer, w, cout, blocks, cin in R50_TABLE:
        for i in range(blocks):
            p, inp = f"{layer}.{i}", (cin if i == 0 else cout)
            out += [(f"{p}.conv1.weight", [w, inp, 1, 1])] + bn(f"{p}.bn1", w)
            out += [(f"{p}.conv2.weight", [w, w, 3, 3])] + bn(f"{p}.bn2", w)
            out += [(f"{p}.conv3.weight", [cout, w, 1, 1])] + bn(f"{p}.bn3", cout)
            if i == 0:
                out += [(f"{p}.downsample.0.weight", [cout, cin, 1, 1])] + bn(f"{p}.downsample.1", cout)
    return out + [("fc.weight", [1000, 2048]), ("fc.bias", [1000])]


def names_shapes(module):
    return [(k, list(v.shape)) for k, v in module.state_dict().items()]


# -- architecture ------------------------------------------------------------------------------

def test_resnet18_keys_and_shapes_match_torchvision_table():
    assert names_shapes(resnet18(keep_fc=True)) == expected_r18()
    assert sum(p.numel() for p in resnet18(keep_fc=True).parameters()) == 11_689_512


def test_resnet50_keys_and_shapes_match_torchvision_table():
    m = resnet50(keep_fc=True)
    got = names_shapes(m)
    assert got == expected_r50()
    d = dict(got)  # the spec's worked examples
    assert d["layer1.0.conv1.weight"] == [64, 64, 1, 1] and d["layer1.0.conv3.weight"] == [256, 64, 1, 1]
    assert d["layer1.0.downsample.0.weight"] == [256, 64, 1, 1] and d["layer1.1.conv1.weight"] == [64, 256, 1, 1]
    assert d["layer3.0.conv2.weight"] == [256, 256, 3, 3] and d["layer4.2.conv3.weight"] == [2048, 512, 1, 1]
    assert sum(p.numel() for p in m.parameters()) == 25_557_032


def test_crw_trunk_options():
    enc = build_encoder("crw-r18-s8")
    t = enc.trunk
    assert names_shapes(t) == expected_r18(upto="layer3", fc=False)   # no layer4, no fc
    assert t.layer3[0].conv1.stride == (1, 1) and t.layer3[0].downsample[0].stride == (1, 1)
    assert t.layer2[0].conv1.stride == (2, 2)
    convs = [m for m in t.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.padding_mode == ("reflect" if m.padding[0] > 0 else "zeros") for m in convs)
    assert t.maxpool.padding == 1 and not enc.training
    r50 = build_encoder("crw-r50-s8").trunk
    assert r50.layer3[0].conv2.stride == (1, 1) and r50.layer3[0].downsample[0].stride == (1, 1)
    assert all(m.padding_mode == "zeros" for m in r50.modules() if isinstance(m, torch.nn.Conv2d))
    assert not hasattr(r50, "layer4")


def test_mast_keys():
    m = MastResNet18()
    keys = dict(names_shapes(m))
    assert keys["conv1.0.weight"] == [64, 3, 7, 7] and keys["conv1.1.running_var"] == [64]
    assert keys["layer4.0.left.0.weight"] == [256, 256, 3, 3] and keys["layer1.1.left.4.bias"] == [64]
    assert {k.split(".shortcut")[0] for k in keys if ".shortcut." in k} == {"layer2.0", "layer3.0"}
    assert keys["post_convolution.weight"] == [64, 256, 3, 3] and keys["post_convolution.bias"] == [64]
    assert not any(isinstance(x, torch.nn.MaxPool2d) for x in m.modules())


@pytest.mark.parametrize("name,hw", [("crw-r18-s8", (240, 427)), ("crw-r18-s8", (33, 17)),
                                     ("imagenet-r18-s8", (9, 25)), ("crw-r50-s8", (41, 23)),
                                     ("mast-r18-s4", (37, 30))])
def test_output_size_is_ceil(name, hw):
    enc = random_encoder(name)
    h, w = hw
    with torch.inference_mode():
        y = enc(enc.preprocess(torch.zeros(1, h, w, 3, dtype=torch.uint8)))
    s = enc.spec.stride
    assert tuple(y.shape) == (1, enc.spec.channels, math.ceil(h / s), math.ceil(w / s)) == (1, enc.spec.channels,
                                                                                          *enc.output_size(h, w))
    if enc.spec.l2_normalize:
        assert torch.allclose(y.norm(dim=1), torch.ones(()), atol=1e-5)


def test_preprocess_imagenet_and_lab():
    enc = build_encoder("crw-r18-s8")
    rgb = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    x = enc.preprocess(rgb)
    want = (torch.tensor([0, 128, 255]) / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert x.dtype == torch.float32 and torch.allclose(x.flatten(), want)
    cv2 = pytest.importorskip("cv2")
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    lab = cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    mast = build_encoder("mast-r18-s4")
    got = mast.preprocess(torch.from_numpy(img)[None])[0].permute(1, 2, 0).numpy()
    want = (lab - np.array([50, 0, 0])) / np.array([50, 127, 127])
    assert np.abs(got - want).max() < 0.005
    with pytest.raises(ConfigError):
        enc.preprocess(torch.zeros(1, 4, 4, 3))


# -- specs -------------------------------------------------------------------------------------

def test_specs_registry_and_dict_round_trip():
    assert list(MODEL_SPECS)[0] == "crw-r18-s8"
    s = get_spec("crw-r18-s8")
    assert (s.arch, s.layer_strides, s.reflect_padding, s.out_layer, s.stride, s.channels, s.l2_normalize) == \
        ("resnet18", (1, 2, 1, 1), True, "layer3", 8, 256, True)
    assert s.mean == (0.485, 0.456, 0.406) and s.std == (0.229, 0.224, 0.225) and s.colour == "rgb"
    assert get_spec("crw-r50-s8").channels == 1024 and not get_spec("imagenet-r18-s8").reflect_padding
    for spec in MODEL_SPECS.values():
        assert ModelSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="crw-r18-s8"):
        get_spec("nope")
    d = s.to_dict()
    with pytest.raises(CheckpointError, match="unknown fields \\['extra'\\]"):
        ModelSpec.from_dict({**d, "extra": 1})
    with pytest.raises(CheckpointError, match="missing fields \\['stride'\\]"):
        ModelSpec.from_dict({k: v for k, v in d.items() if k != "stride"})
    with pytest.raises(CheckpointError, match="stride 4 does not match"):
        ModelSpec.from_dict({**d, "stride": 4})


# -- golden ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def golden(shared):
    from PIL import Image
    g = shared / "golden" / "crw_propagation"
    rgb = np.array(Image.open(g / "inputs/blackswan/JPEGImages/00000.jpg").convert("RGB"))
    feat = np.load(g / "features/blackswan.npz")["feat_frame0"]
    return g / "encoder_seed0.pt", rgb, feat


def features_of(enc: Encoder, rgb: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return enc(enc.preprocess(torch.from_numpy(rgb)[None]))[0].numpy()


@pytest.mark.shared
def test_golden_crw_features(golden):
    weights, rgb, feat = golden
    enc = load_encoder(weights, model="crw-r18-s8")
    got = features_of(enc, rgb)
    assert got.shape == feat.shape == (256, 30, 54)
    diff = float(np.abs(got - feat).max())
    print(f"golden feat_frame0 max abs diff: {diff:.3g}")
    assert diff <= 1e-5


@pytest.mark.shared
def test_crw_layout_import_matches_plain(golden, tmp_path):
    weights, rgb, feat = golden
    sd = torch.load(weights, weights_only=True)
    extra = {k: v for k, v in resnet18().state_dict().items() if k.startswith("layer4.")}  # trained files have it
    model = {"encoder.model." + k: v for k, v in {**sd, **extra}.items()}
    model.update({"selfsim_fc.0.weight": torch.zeros(128, 512), "selfsim_fc.0.bias": torch.zeros(128)})
    path = tmp_path / "crw.pth"
    torch.save({"model": model, "optimizer": {}, "epoch": 3,
                "args": argparse.Namespace(model_type="scratch", temp=0.05, remove_layers=[])}, path)
    enc = load_encoder(path)   # the args say "scratch": crw-r18-s8 without being told
    assert enc.spec.name == "crw-r18-s8"
    assert np.array_equal(features_of(enc, rgb), features_of(load_encoder(weights, model="crw-r18-s8"), rgb))
    assert np.abs(features_of(enc, rgb) - feat).max() <= 1e-5
    # DataParallel-wrapped variant
    torch.save({"model": {"module." + k: v for k, v in model.items()}}, path)
    assert load_encoder(path).spec.name == "crw-r18-s8"


# -- checkpoint errors and our format ----------------------------------------------------------

class NotATensor:
    pass


@pytest.fixture(scope="module")
def r18_sd():
    return random_encoder("crw-r18-s8").trunk.state_dict()


def save(tmp_path, obj, name="ck.pt"):
    p = tmp_path / name
    torch.save(obj, p)
    return p


def test_missing_unexpected_and_mismatched_keys_are_listed(tmp_path, r18_sd):
    sd = {k: v for k, v in r18_sd.items() if not k.startswith("layer3.1.")}
    with pytest.raises(CheckpointError, match=r"10 missing keys \[layer3\.1\.bn1\.bias, .*layer3\.1\.conv2\.weight") as e:
        load_encoder(save(tmp_path, sd), model="crw-r18-s8")
    assert "unexpected" not in e.value.reason
    sd = {**r18_sd, "bogus.weight": torch.zeros(1), "layer2.0.extra": torch.zeros(1),
          "fc.weight": torch.zeros(1000, 512), "layer4.0.conv1.weight": torch.zeros(1)}   # last two: ignorable
    with pytest.raises(CheckpointError, match=r"2 unexpected keys \[bogus\.weight, layer2\.0\.extra\]"):
        load_encoder(save(tmp_path, sd), model="crw-r18-s8")
    sd = {**r18_sd, "conv1.weight": torch.zeros(64, 3, 5, 5)}
    with pytest.raises(CheckpointError, match=r"1 shape mismatches .*conv1\.weight \(64, 3, 5, 5\) vs \(64, 3, 7, 7\)"):
        load_encoder(save(tmp_path, sd), model="crw-r18-s8")
    many = {k: v for k, v in r18_sd.items() if not k.startswith("layer3")}
    with pytest.raises(CheckpointError, match=r"\d+ missing keys \[.*\.\.\. \(\d+ more\)\]"):
        load_encoder(save(tmp_path, many), model="crw-r18-s8")
    # num_batches_tracked is optional (old torchvision files lack it)
    old = {k: v for k, v in r18_sd.items() if not k.endswith("num_batches_tracked")}
    load_encoder(save(tmp_path, old), model="crw-r18-s8")


def test_refusals(tmp_path, r18_sd):
    with pytest.raises(CheckpointError, match="refused: contains pickled objects other than tensors .*NotATensor"):
        load_encoder(save(tmp_path, {"conv1.weight": torch.zeros(1), "x": NotATensor()}), model="crw-r18-s8")
    with pytest.raises(CheckpointError, match="refused: .*print"):
        load_encoder(save(tmp_path, {"f": print}), model="crw-r18-s8")
    with pytest.raises(CheckpointError, match="not a dict: found a Tensor"):
        load_encoder(save(tmp_path, torch.zeros(3)), model="crw-r18-s8")
    with pytest.raises(CheckpointError, match="not a dict: found a list"):
        load_encoder(save(tmp_path, [1, 2]), model="crw-r18-s8")
    with pytest.raises(CheckpointError, match=r"not a plain state dict: found keys \[a, b\]"):
        load_encoder(save(tmp_path, {"a": 1, "b": "x"}), model="crw-r18-s8")
    with pytest.raises(CheckpointError, match="file not found"):
        load_encoder(tmp_path / "absent.pt", model="crw-r18-s8")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_encoder(junk, model="crw-r18-s8")
    with pytest.raises(CheckpointError, match="pass model=NAME"):
        load_encoder(save(tmp_path, dict(r18_sd)))
    with pytest.raises(CheckpointError, match="unknown model 'nope'"):
        load_encoder(save(tmp_path, dict(r18_sd)), model="nope")


def test_our_format_round_trip(tmp_path):
    enc = random_encoder("crw-r18-s8", seed=3)
    with torch.no_grad():                      # non-trivial BN statistics must survive too
        enc.trunk.bn1.running_mean.uniform_(-1, 1)
    path = tmp_path / "sub" / "ours.pt"
    save_checkpoint(path, enc, "crw", config={"lr": 1e-4, "layers": [1, 2]}, data={"videos": 3}, step=7,
                    metrics={"J&F": 0.5})
    assert not [p for p in path.parent.iterdir() if p.name != "ours.pt"]   # no temp file left behind
    back = load_encoder(path)
    assert back.spec == enc.spec and not back.training
    for (k, a), (k2, b) in zip(enc.trunk.state_dict().items(), back.trunk.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    meta = read_checkpoint(path)
    assert (meta["method"], meta["step"], meta["metrics"], meta["config"]["layers"]) == ("crw", 7, {"J&F": 0.5}, [1, 2])
    assert load_encoder(path, model="crw-r18-s8").spec.name == "crw-r18-s8"
    with pytest.raises(CheckpointError, match="is a 'crw-r18-s8' model, not 'crw-r50-s8'"):
        load_encoder(path, model="crw-r50-s8")
    obj = torch.load(path, weights_only=True)
    torch.save({**obj, "version": 2}, path)
    with pytest.raises(CheckpointError, match="version 2"):
        load_encoder(path)
    torch.save({**obj, "model_spec": {**obj["model_spec"], "colour": "hsv"}}, path)
    with pytest.raises(CheckpointError, match="colour"):
        load_encoder(path)
    from pathlib import Path
    with pytest.raises(ConfigError, match="PosixPath|WindowsPath"):
        save_checkpoint(tmp_path / "bad.pt", enc, "crw", config={"root": Path("/x")})
    assert not (tmp_path / "bad.pt").exists()


def test_default_model(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "default_checkpoint_path", lambda: tmp_path / "models" / "default.pt")
    with pytest.raises(CheckpointError, match="no model is available"):
        load_encoder()
    save_checkpoint(tmp_path / "models" / "default.pt", random_encoder("crw-r18-s8"), "crw")
    assert load_encoder().spec.name == "crw-r18-s8"
    assert load_encoder(model="crw-r18-s8").spec.name == "crw-r18-s8"
    with pytest.raises(CheckpointError, match="no weights for model 'crw-r50-s8'"):
        load_encoder(model="crw-r50-s8")


def test_random_encoder_is_reproducible():
    a, b = random_encoder("imagenet-r18-s8", seed=1), random_encoder("imagenet-r18-s8", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
