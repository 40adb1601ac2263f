"""transferlab.predict: Predictor (ONNX Runtime / PyTorch), files, folders, globs, broken files, CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_export_fixtures import digits_run, exported_run, make_run, write_images  # noqa: F401

import transferlab.predictor
from transferlab.errors import ConfigError, TransferlabError
from transferlab.predictor import Predictor, expand_paths


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """good images in a nested folder, plus broken files and a non-image file."""
    root = tmp_path / "imgs"
    write_images(root, n=3)
    write_images(root / "sub", n=2, seed=1, ext=".jpg")
    good = (root / "sub" / "img0.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("not an image")
    (root / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_predict_folder_with_broken_files(exported_run, image_tree):
    rows = transferlab.predict(exported_run, [image_tree], topk=3)
    by_name = {Path(r["path"]).name: r for r in rows}
    assert set(by_name) == {"img0.png", "img1.png", "img2.png", "img0.jpg", "img1.jpg",
                            "truncated.jpg", "empty.png", "text.jpg"}
    assert by_name["truncated.jpg"]["error"] == "truncated image"
    assert by_name["empty.png"]["error"] == "zero bytes"
    assert by_name["text.jpg"]["error"] == "not an image"
    good = [r for r in rows if "error" not in r]
    assert len(good) == 5
    for r in good:
        assert len(r["top"]) == 3 and r["label"] == r["top"][0]["class"]
        probs = [t["prob"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_files_globs_and_missing_paths(image_tree):
    files, errors = expand_paths([str(image_tree / "sub" / "*.jpg"), image_tree / "img0.png",
                                  image_tree / "img0.png", str(image_tree / "nothing*.png"), "/no/such/file.jpg"])
    assert [Path(f).name for f in files] == ["img0.jpg", "img1.jpg", "img0.png"]   # deduplicated
    assert {e["error"] for e in errors} == {"no files match this pattern", "file not found"}
    files, _ = expand_paths(str(image_tree / "**" / "*.jpg"))
    assert {Path(f).name for f in files} == {"img0.jpg", "img1.jpg", "truncated.jpg", "text.jpg"}


def test_torch_and_onnx_backends_agree(exported_run, digits_dir):
    files = sorted(str(p) for p in Path(digits_dir).glob("*/*.png"))[::7]
    onnx_p, torch_p = Predictor(exported_run, backend="onnx"), Predictor(exported_run, backend="torch")
    assert Predictor(exported_run).backend == "onnx"   # auto picks the export
    assert onnx_p.classes == torch_p.classes
    batch = np.stack([onnx_p.preprocess.load(f) for f in files])
    a, b = onnx_p.predict_arrays(batch), torch_p.predict_arrays(batch)
    assert a.shape == (len(files), 10)
    assert np.abs(a - b).max() < 1e-4
    ra = onnx_p.predict_paths(files, topk=2)
    rb = torch_p.predict_paths(files, topk=2)
    assert [r["label"] for r in ra] == [r["label"] for r in rb]


def test_predict_images_and_tta(exported_run, tmp_path):
    from PIL import Image

    p = Predictor(exported_run, batch_size=2)
    imgs = [Image.open(f) for f in write_images(tmp_path / "x", n=5)] + [Image.new("L", (20, 50), 128)]
    probs = p.predict_images(imgs)
    assert probs.shape == (6, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    tta = p.predict_images(imgs, tta=True)
    flipped = p.predict_images([im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in imgs])
    assert np.allclose(tta, (probs + flipped) / 2, atol=1e-5)
    assert p.predict_images([]).shape == (0, 10)
    info = p.info
    assert info["backend"] == "onnx" and info["input_size"] == 32 and info["classes"] == p.classes


def test_paths_match_eval_preprocessing(exported_run, digits_dir):
    """Predictor preprocessing == the data module's eval pipeline (load_image + eval transform)."""
    import torch

    from transferlab.data import build_transform, load_image

    p = Predictor(exported_run, backend="torch")
    f = next(Path(digits_dir).glob("3/*.png"))
    cfg = p.data_cfg
    want = build_transform(cfg, train=False)(torch.from_numpy(load_image(f, cfg["load_size"], cfg["interpolation"])).permute(2, 0, 1))
    assert np.array_equal(p.preprocess.load(f), want.numpy())


def test_decoded_images_are_converted_like_files(exported_run, tmp_path):
    """predict_images(PIL) sees the pixels a file gives: transparency on white, 16-bit scaled, not clipped."""
    from PIL import Image

    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:30, 10:30] = (200, 30, 30, 255)  # an opaque square on a fully transparent background
    gray16 = Image.fromarray(np.arange(1600, dtype=np.uint16).reshape(40, 40) * 40)  # mode I;16
    pre = Predictor(exported_run, backend="torch").preprocess
    for name, img in (("rgba.png", Image.fromarray(rgba)), ("gray16.png", gray16)):
        img.save(tmp_path / name)
        assert np.array_equal(pre.image(Image.open(tmp_path / name)), pre.load(tmp_path / name)), name


def test_backend_choice_and_stale_export(tmp_path, exported_run):
    run = make_run(tmp_path / "fresh", "cnn_bn", input_size=32)
    assert Predictor(run).backend == "torch"              # not exported
    with pytest.raises(TransferlabError, match="transferlab export"):
        Predictor(run, backend="onnx")
    with pytest.raises(ConfigError, match="backend"):
        Predictor(run, backend="tensorrt")
    stale = Path(shutil.copytree(exported_run, tmp_path / "stale"))
    make_run(stale, "cnn_bn", [str(i) for i in range(10)], input_size=32, seed=1)   # retrained after export
    p = Predictor(stale)
    assert p.backend == "torch" and "older" in p.notes[0]


def test_cli_predict_formats(exported_run, image_tree, tmp_path, capsys):
    from transferlab.cli import main

    out = tmp_path / "out.json"
    assert main(["predict", str(exported_run), str(image_tree), "--format", "json", "-o", str(out),
                 "--topk", "2", "--no-progress"]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 8 and sum("error" in r for r in rows) == 3
    err = capsys.readouterr().err
    assert "truncated.jpg: truncated image" in err and "predicted 5 image(s) with onnx, 3 skipped" in err

    assert main(["predict", str(exported_run), str(image_tree / "img0.png"), "--format", "csv",
                 "--backend", "torch", "--tta", "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "path,rank,class,probability,error,answer,score" and len(lines) == 6

    assert main(["predict", str(exported_run), str(image_tree / "sub"), "--no-progress"]) == 0
    assert "img1.jpg" in capsys.readouterr().out

    assert main(["predict", str(exported_run), str(image_tree / "empty.png"), "--no-progress"]) == 2
    assert "no image could be classified" in capsys.readouterr().err


def test_pixels_then_normalize_is_load_bit_for_bit(exported_run, image_tree):
    """The server keeps uint8 pixels while an image waits for its batch: normalising them later (one
    image or a batch) gives exactly the numbers of Preprocess.load."""
    from transferlab.runtime import Preprocess

    pre = Preprocess({"input_size": 24, "load_size": 28, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    files = [image_tree / "img0.png", image_tree / "sub" / "img1.jpg"]
    px = [pre.pixels(f) for f in files]
    assert px[0].dtype == np.uint8 and px[0].shape == (24, 24, 3)
    want = np.stack([pre.load(f) for f in files])
    assert np.array_equal(pre.normalize(np.stack(px)), want)
    assert np.array_equal(pre.normalize(px[1]), want[1])
    assert np.array_equal(pre.normalize(np.stack(px)[:, :, ::-1]), want[..., ::-1])   # the TTA mirror


def test_one_tta_path_for_arrays_and_tensors():
    """evaluate (tensors), predict and serve (arrays) mirror along the width and average the same way."""
    import numpy as np
    import torch

    from transferlab.tta import average_mirrors, with_mirrors

    x = np.random.default_rng(0).normal(size=(3, 2, 4, 5)).astype(np.float32)
    both = with_mirrors(x)
    assert both.shape == (6, 2, 4, 5) and np.array_equal(both[3:], x[..., ::-1])
    t = with_mirrors(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), both)
    hwc = np.moveaxis(x, 1, -1)  # serve's [B, H, W, C] pixels: the width is axis 2
    assert np.array_equal(with_mirrors(hwc, width_axis=2)[3:], hwc[:, :, ::-1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.4, 0.6]])
    assert np.allclose(average_mirrors(probs), [[0.7, 0.3], [0.3, 0.7]])
