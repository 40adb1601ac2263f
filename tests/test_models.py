"""transferlab.models: recipes, Classifier shapes, heads, freeze policies, split_backbone, CLI."""
from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

from transferlab.errors import ConfigError, WeightsError
from transferlab.models import (
    Classifier,
    apply_freeze,
    backbone_blocks,
    count_params,
    create_model,
    describe,
    get_recipe,
    list_recipes,
    split_backbone,
)
from transferlab.models.freeze import layer_parameters

LADDER = ["cnn_base", "cnn_aug", "cnn_bn", "cnn_dropout"]
CHEAP = LADDER + ["resnet_scratch", "resnet34_scratch", "mobilenet_v1", "mobilenet_v1_tf", "mobilenet_v1_025_tf",
                  "mobilenet_v2", "mobilenet_v2_035", "efficientnet_b0", "efficientnet_lite0", "efficientnet_lite1",
                  "efficientnet_lite2"]
BIG = ["xception", "densenet121", "resnet50"]
REQUIRED = set(CHEAP + BIG)


def _model(name, num_classes=3, **kw):
    kw.setdefault("pretrained", False)
    return create_model(name, num_classes, **kw)


def _trainable_ids(model):
    return {id(p) for p in model.parameters() if p.requires_grad}


# ---------------------------------------------------------------- registry

def test_registry_has_every_recipe():
    recipes = {r.name: r for r in list_recipes()}
    assert REQUIRED <= set(recipes)
    for r in recipes.values():
        assert r.kind in ("scratch", "transfer")
        assert r.defaults["freeze"] == ("frozen" if r.kind == "transfer" else "full")
        assert r.pretrained == (r.kind == "transfer")
        assert {"augment", "lr", "weight_decay", "freeze"} <= set(r.defaults)
    assert recipes["cnn_base"].defaults["augment"] == "none"
    assert recipes["cnn_aug"].defaults["augment"] == "shift"
    # each rung adds one technique to the one below it
    base, aug, bn, drop = (recipes[n].defaults for n in ("cnn_base", "cnn_aug", "cnn_bn", "cnn_dropout"))
    assert aug["augment"] != base["augment"] and bn["augment"] == aug["augment"]
    assert drop["weight_decay"] > bn["weight_decay"] == 0
    # the CPU transfer recipes fine-tune their upper blocks after one head-only epoch
    for name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2"):
        d = recipes[name].defaults
        assert d["epochs"] == 1 and d["fine_tune"] >= 4 and d["unfreeze_last"] >= 8 and d["feature_views"] >= 2
    assert recipes["cnn_dropout"].defaults["weight_decay"] > 0
    assert recipes["efficientnet_lite0"].timm_name == "tf_efficientnet_lite0"
    assert recipes["mobilenet_v1"].timm_name == "mobilenetv1_100"
    assert recipes["mobilenet_v2_035"].timm_name == "mobilenetv2_035"
    assert recipes["xception"].input_size == 299


def test_unknown_recipe_lists_names_and_suggests():
    with pytest.raises(ConfigError) as exc:
        get_recipe("mobilenet_v3")
    msg = str(exc.value)
    assert "mobilenet_v2" in msg and "cnn_base" in msg and "Did you mean" in msg
    with pytest.raises(ConfigError, match="cnn_base"):
        create_model("cnn_bse", 2)


def test_timm_any_model():
    r = get_recipe("timm:resnet18")
    assert r.kind == "transfer" and r.timm_name == "resnet18" and r.pretrained
    m = create_model("timm:resnet18", 4, pretrained=False).eval()
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    with pytest.raises(ConfigError, match="timm has no model"):
        get_recipe("timm:resnet_does_not_exist")


# ---------------------------------------------------------------- building

@pytest.mark.parametrize("name", CHEAP)
def test_recipe_builds_and_gives_logits(name):
    m = _model(name, 5)
    assert isinstance(m, Classifier) and m.recipe == name and m.num_classes == 5
    cfg = m.data_cfg
    assert set(cfg) >= {"input_size", "load_size", "mean", "std", "crop_pct", "interpolation"}
    assert cfg["input_size"] == get_recipe(name).input_size
    assert cfg["load_size"] == round(cfg["input_size"] / cfg["crop_pct"])
    size = 64 if name in LADDER else 32  # the ladder's flatten size follows its input size (64)
    x = torch.randn(2, 3, size, size)
    m.train()
    assert m(x).shape == (2, 5)
    m.eval()
    with torch.no_grad():
        feats = m.backbone(x)
        assert feats.shape == (2, m.num_features)
        assert m(x).shape == (2, 5)


@pytest.mark.parametrize("name", BIG)
def test_big_recipe_single_forward(name):
    m = _model(name, 3).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_ladder_architecture_and_input_sizes():
    m = _model("cnn_base", 10, input_size=32)
    convs = [l for _, l in m.layers() if isinstance(l, nn.Conv2d)]
    # the seed shape, sized for a CPU: (conv3x3 > conv3x3 > maxpool) x 3 at 32 px, 16 -> 32 -> 64 filters
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (16, (3, 3), (1, 1)), (16, (3, 3), (1, 1)), (32, (3, 3), (1, 1)), (32, (3, 3), (1, 1)),
        (64, (3, 3), (1, 1)), (64, (3, 3), (1, 1))]
    assert sum(isinstance(l, nn.MaxPool2d) for _, l in m.layers()) == 3
    assert m.num_features == 64 * 4 * 4  # flattened from a 4x4 map
    linears = [l for l in m.head if isinstance(l, nn.Linear)]
    assert [l.out_features for l in linears] == [256, 10] and m.head_hidden == [256]
    # a stage more per doubling of the input, up to 5
    for size, stages in ((32, 3), (33, 3), (48, 4), (64, 4), (100, 5), (128, 5), (256, 5)):
        mm = _model("cnn_base", 2, input_size=size).eval()
        assert mm.data_cfg["input_size"] == size
        assert sum(isinstance(l, nn.MaxPool2d) for _, l in mm.layers()) == stages, size
        assert mm(torch.randn(1, 3, size, size)).shape == (1, 2)
    with pytest.raises(ConfigError, match="32"):
        _model("cnn_base", 2, input_size=31)
    bn = _model("cnn_bn", input_size=32)
    assert sum(isinstance(l, nn.BatchNorm2d) for _, l in bn.layers()) == 6
    assert all(c.bias is None for _, c in bn.layers() if isinstance(c, nn.Conv2d))  # bias-free before BN
    dr = _model("cnn_dropout", input_size=32)
    assert sum(isinstance(l, nn.Dropout) for _, l in dr.layers()) == 3  # after each stage
    assert any(isinstance(l, nn.Dropout) for l in dr.head)
    assert dr.head_dropout == [0.3]


def test_resnet_scratch_keeps_small_photos_at_full_resolution():
    small = _model("resnet_scratch", 10, input_size=32).eval()
    assert small.backbone.conv1[0].stride == (1, 1) and isinstance(small.backbone.maxpool, nn.Identity)
    big = _model("resnet_scratch", 10, input_size=128).eval()
    assert big.backbone.conv1[0].stride == (2, 2) and not isinstance(big.backbone.maxpool, nn.Identity)
    assert [b.conv1.out_channels for b in small.backbone.layer1] == [16, 16]
    assert small(torch.randn(2, 3, 32, 32)).shape == big(torch.randn(2, 3, 128, 128)).shape == (2, 10)
    seed = _model("resnet34_scratch", 3, input_size=64).backbone  # the seeds' ResNet-34: ImageNet stem at every size
    assert seed.layer3[5].conv2.out_channels == 256 and seed.conv1[0].stride == (2, 2)


def test_recipes_pick_their_input_size_for_the_data():
    from transferlab.models import get_recipe

    assert get_recipe("cnn_bn").input_for(32) == (32, None)        # CIFAR-size photos: their own size
    assert get_recipe("cnn_bn").input_for(150) == (128, None)      # larger photos: at most 128 px
    assert get_recipe("cnn_bn").input_for(70) == (64, None)
    assert get_recipe("efficientnet_lite0").input_for(32) == (128, 1.0)   # upscaled, nothing cropped
    assert get_recipe("efficientnet_lite2").input_for(300) == (260, None)  # native size
    assert get_recipe("efficientnet_lite0").input_for(None) == (224, None)


def test_head_options():
    m = _model("mobilenet_v1_025_tf", 4, head=(512,))
    assert [type(l).__name__ for l in m.head] == ["Linear", "ReLU", "Linear"]
    m = _model("mobilenet_v1_025_tf", 4, head=(256, 128), dropout=(0.5, 0.3))
    assert [l.p for l in m.head if isinstance(l, nn.Dropout)] == [0.5, 0.3]
    assert m.head_hidden == [256, 128] and m.head_dropout == [0.5, 0.3]
    m = _model("mobilenet_v1_025_tf", 4, head=(64, 32), dropout=0.2)
    assert [l.p for l in m.head if isinstance(l, nn.Dropout)] == [0.2, 0.2]
    m = _model("mobilenet_v1_025_tf", 4, dropout=0.2)  # no hidden layer: dropout before the classifier
    assert [type(l).__name__ for l in m.head] == ["Dropout", "Linear"]
    m.eval()
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 4)
    # round trip of the normalised spec (what checkpoints store)
    m2 = _model("mobilenet_v1_025_tf", 4, head=m.head_hidden, dropout=m.head_dropout)
    assert [type(l) for l in m2.head] == [type(l) for l in m.head]
    with pytest.raises(ConfigError):
        _model("mobilenet_v1_025_tf", 4, head=(64, 32), dropout=(0.1, 0.2, 0.3))
    with pytest.raises(ConfigError):
        _model("mobilenet_v1_025_tf", 4, dropout=1.5)
    with pytest.raises(ConfigError):
        _model("mobilenet_v1_025_tf", 0)


# ---------------------------------------------------------------- freezing

@pytest.mark.parametrize("name", ["cnn_bn", "mobilenet_v2", "efficientnet_lite0", "resnet_scratch"])
def test_freeze_policies(name):
    m = _model(name)
    head_ids = {id(p) for p in m.head.parameters()}
    layers = m.layers()

    n = apply_freeze(m, "frozen")
    assert _trainable_ids(m) == head_ids
    assert n == count_params(m.head)
    m.train()
    bns = [mod for mod in m.backbone.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(b.training for b in bns)
    assert m.head.training
    m(torch.randn(2, 3, 64, 64))  # frozen BN running stats must not move
    m.eval()
    assert not any(b.training for b in bns)

    for at in (1, len(layers) // 2, len(layers) - 3, -5):
        n = apply_freeze(m, unfreeze_from=at)
        idx = at % len(layers) if at < 0 else at
        expected = set(head_ids)
        for _, layer in layers[idx:]:
            expected |= {id(p) for p in layer_parameters(layer)}
        assert _trainable_ids(m) == expected
        assert n == sum(p.numel() for p in m.parameters() if p.requires_grad)
        m.train()
        for i, (_, layer) in enumerate(layers):
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                assert layer.training == (i >= idx), (i, idx)
    with pytest.raises(ConfigError, match="frozen, full"):  # one vocabulary with TrainConfig: no "unfreeze_from=3"
        apply_freeze(m, "unfreeze_from=3")

    groups = backbone_blocks(m.backbone)
    for k in (1, 2):
        apply_freeze(m, unfreeze_last=k)
        expected = set(head_ids) | {id(p) for g in groups[-k:] for p in g}
        assert _trainable_ids(m) == expected
    assert apply_freeze(m, unfreeze_last=0) == count_params(m.head)

    n = apply_freeze(m, "full")
    assert n == count_params(m) and len(_trainable_ids(m)) == len(list(m.parameters()))
    m.train()
    assert all(b.training for b in bns)

    with pytest.raises(ConfigError):
        apply_freeze(m, unfreeze_from=len(layers) + 1)
    with pytest.raises(ConfigError):
        apply_freeze(m, unfreeze_last=len(groups) + 1)
    with pytest.raises(ConfigError):
        apply_freeze(m, "sometimes")


def test_unfreeze_last_counts_blocks():
    m = _model("mobilenet_v2")
    groups = backbone_blocks(m.backbone)
    assert len(groups) == 18  # stem + 17 inverted-residual blocks (conv_head joins the last one)
    ladder = backbone_blocks(_model("cnn_bn", input_size=32).backbone)
    assert len(ladder) == 3  # one per stage (conv, bn, relu, conv, bn, relu, pool)


def test_frozen_bn_keeps_running_stats():
    m = _model("cnn_bn")
    apply_freeze(m, "frozen")
    m.train()
    before = m.backbone.bn1_1.running_mean.clone()
    m(torch.randn(4, 3, 64, 64) * 3 + 1)
    assert torch.equal(before, m.backbone.bn1_1.running_mean)


# ---------------------------------------------------------------- split_backbone

@pytest.mark.parametrize("name", ["cnn_dropout", "mobilenet_v2", "efficientnet_lite0", "mobilenet_v1_025_tf", "resnet_scratch"])
def test_split_backbone_composes(name):
    m = _model(name).eval()
    layers = m.layers()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        ref = m.backbone(x)
        for at in (0, 5, len(layers) // 2, len(layers) - 1, len(layers)):
            lower, upper = split_backbone(m, at)
            assert torch.allclose(upper(lower(x)), ref, atol=1e-5), at
            lower_ids = {id(p) for p in lower.parameters()}
            allowed = {id(p) for _, l in layers[:at] for p in layer_parameters(l)}
            assert lower_ids <= allowed, at
            assert lower_ids | {id(p) for p in upper.parameters()} == {id(p) for p in m.backbone.parameters()}
    lower, upper = split_backbone(m, len(layers))
    assert len(upper) == 0  # all frozen: lower is the whole backbone (pooled features)


def test_split_backbone_unsupported_returns_none():
    assert split_backbone(_model("densenet121"), 10) is None


# ---------------------------------------------------------------- deployment-friendliness

@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # TorchScript is deprecated in torch 2.14; still offered
def test_channels_last_jit_and_meta():
    m = _model("mobilenet_v1_025_tf").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = m(x)
        cl = m.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert torch.allclose(ref, cl, atol=1e-4)
        m = m.to(memory_format=torch.contiguous_format)
        traced = torch.jit.trace(m, x)
        assert torch.allclose(traced(x), ref, atol=1e-5)
        small = _model("cnn_bn").eval()
        scripted = torch.jit.script(small)
        assert torch.allclose(scripted(x), small(x), atol=1e-5)
    with torch.device("meta"):
        big = create_model("resnet50", 10, pretrained=False)
    assert count_params(big.backbone) > 20_000_000


def test_onnx_export(tmp_path):
    import onnxruntime as ort  # a hard dependency

    m = _model("cnn_bn").eval()
    x = torch.randn(2, 3, 64, 64)
    path = tmp_path / "m.onnx"
    torch.onnx.export(m, (x,), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}}, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": x.numpy()})[0]
    assert torch.allclose(torch.from_numpy(out), m(x).detach(), atol=1e-4)


def test_describe():
    m = _model("cnn_bn", 4)
    apply_freeze(m, "frozen")
    d = describe(m)
    assert d["recipe"] == "cnn_bn" and d["params"] == count_params(m)
    assert d["trainable_params"] == d["head_params"] and d["freeze"] == "frozen"
    assert d["layers"] == len(m.layers()) and d["data_cfg"]["input_size"] == 64
    json.dumps(d)


# ---------------------------------------------------------------- pretrained defaults never fall back to random init

def test_offline_without_weights_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("TRANSFERLAB_WEIGHTS", raising=False)
    t = time.time()
    with pytest.raises(WeightsError) as exc:
        create_model("resnet50", 3)
    assert time.time() - t < 20
    msg = str(exc.value)
    assert "\n" not in msg and "--weights" in msg and "TRANSFERLAB_WEIGHTS" in msg and "online" in msg
    with pytest.raises(WeightsError):
        create_model("mobilenet_v2", 3, pretrained=True)
    assert create_model("resnet50", 3, pretrained=False).weights_info["source"] is None


def test_hub_failure_is_caught(monkeypatch):
    import timm

    import transferlab.models.weights as w

    monkeypatch.delenv("TRANSFERLAB_WEIGHTS", raising=False)
    monkeypatch.setattr(w, "hub_offline", lambda: False)
    real = timm.create_model

    def fake(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("Name or service not known")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", fake)
    with pytest.raises(WeightsError, match="Name or service not known"):
        create_model("efficientnet_b0", 3)


def test_no_hub_weights_and_scratch_pretrained():
    with pytest.raises(WeightsError, match="--weights"):
        create_model("mobilenet_v2_035", 3)
    with pytest.raises(WeightsError):
        create_model("mobilenet_v1_tf", 3)
    with pytest.raises(ConfigError, match="scratch"):
        create_model("cnn_base", 3, pretrained=True)


# ---------------------------------------------------------------- CLI

def test_models_cli(capsys):
    from transferlab.cli import main

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert REQUIRED <= set(by_name)
    assert by_name["mobilenet_v2"]["params"] == 2223872 and by_name["mobilenet_v2"]["input_size"] == 224
    assert by_name["cnn_base"]["input_size"] == 64
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "cnn_dropout" in out
    assert main(["models", "--layers", "cnn_bn"]) == 0
    assert "bn1" in capsys.readouterr().out
    assert main(["models", "--layers", "nope"]) == 2
