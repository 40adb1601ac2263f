"""Any aspect ratio: --resize crop|pad|stretch, the same in training, evaluation, export and serving,
and inspect's aspect-ratio report."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import transferlab
from transferlab.data import ImageDataset, build_transform, data_config
from transferlab.data.cache import cache_key
from transferlab.data.images import PAD_FILL, load_image, resize_image
from transferlab.data.report import aspect_summary, inspect_data
from transferlab.errors import ConfigError
from transferlab.predictor import Predictor


def _striped(width: int = 120, height: int = 60) -> Image.Image:
    """A wide photo: a red band on the left, a blue band on the right, green in between."""
    px = np.zeros((height, width, 3), np.uint8)
    px[:, :] = (0, 200, 0)
    px[:, : width // 10] = (255, 0, 0)
    px[:, -width // 10:] = (0, 0, 255)
    return Image.fromarray(px)


def test_the_three_modes_on_a_wide_photo():
    img = _striped()
    crop, pad, stretch = (np.asarray(resize_image(img, 40, mode=m)) for m in ("crop", "pad", "stretch"))
    assert crop.shape == pad.shape == stretch.shape == (40, 40, 3)
    # the centre crop loses both side bands; pad and stretch keep them
    assert not (crop[..., 0] > 200).any() and not (crop[..., 2] > 200).any()
    for a in (pad, stretch):
        assert (a[20, 0] == (255, 0, 0)).all() and (a[20, -1] == (0, 0, 255)).all()
    # pad keeps the aspect ratio: 120x60 -> 40x20 centred, the letterbox above and below in PAD_FILL
    assert (pad[0] == PAD_FILL).all() and (pad[-1] == PAD_FILL).all() and (pad[10:30, 20] == (0, 200, 0)).all()
    # stretch fills the square with the photo: no letterbox
    assert not (stretch == PAD_FILL).all(axis=-1).any()
    with pytest.raises(ConfigError, match="resize mode"):
        resize_image(img, 40, mode="zoom")
    with pytest.raises(ConfigError, match="resize mode"):
        data_config(32, resize="zoom")


def test_each_mode_has_its_own_cache_array_and_the_same_pixels_cached_or_not(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"w{i}.png"
        _striped(100 + 10 * i, 50).save(p)
        paths.append(str(p))
    keys = {m: cache_key(paths, 32, "bilinear", m) for m in ("crop", "pad", "stretch")}
    assert len(set(keys.values())) == 3 and keys["crop"] == cache_key(paths, 32, "bilinear")  # old keys kept
    cfg = data_config(32, crop_pct=1.0, resize="pad")
    cached = ImageDataset([(p, 0) for p in paths], cfg, cache_dir=tmp_path / "cache", progress=False)
    plain = ImageDataset([(p, 0) for p in paths], cfg)
    assert cached.cached and not plain.cached
    for i, p in enumerate(paths):
        want = load_image(p, 32, "bilinear", "pad")
        assert (cached.load(i).permute(1, 2, 0).numpy() == want).all()
        assert (plain.load(i).permute(1, 2, 0).numpy() == want).all()


@pytest.fixture(scope="module")
def wide_data(tmp_path_factory):
    """Two classes of wide photos told apart only by their side bands (which a centre crop cuts off)."""
    root = tmp_path_factory.mktemp("wide") / "data"
    rng = np.random.default_rng(0)
    for cls, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (root / cls).mkdir(parents=True)
        for i in range(16):
            px = rng.integers(90, 130, (40, 120, 3), dtype=np.uint8)
            px[:, :14] = colour
            px[:, -14:] = colour
            Image.fromarray(px).save(root / cls / f"{i}.png")
    return root


def test_train_pad_is_recorded_and_used_by_evaluate_export_and_predict(wide_data, tmp_path):
    run = transferlab.train(wide_data, model="cnn_base", epochs=2, input_size=32, resize="pad",
                            run_dir=str(tmp_path / "runs"), progress=False)
    cfg = json.loads((run.dir / "config.json").read_text())
    assert cfg["resize"] == "pad" and cfg["data_cfg"]["resize"] == "pad"
    transferlab.evaluate(run.dir, plots=False, progress=False)
    transferlab.export(run.dir, format="onnx")
    meta = json.loads((run.dir / "export" / "model.json").read_text())
    assert meta["resize"] == "pad" and meta["data_cfg"]["resize"] == "pad"
    files = sorted(str(f) for f in (wide_data / "red").glob("*.png"))[:3]
    torch_p, onnx_p = Predictor(run.dir, backend="torch"), Predictor(run.dir, backend="onnx")
    assert torch_p.info["resize"] == onnx_p.info["resize"] == "pad"
    # the serving preprocessing is evaluation's: the letterboxed pixels through the eval transform
    ds = ImageDataset([(f, 0) for f in files], cfg["data_cfg"], transform=build_transform(cfg["data_cfg"], train=False))
    for i, f in enumerate(files):
        assert onnx_p.preprocess.load(f) == pytest.approx(ds[i][0].numpy(), abs=1e-6)
        with Image.open(f) as im:
            assert onnx_p.preprocess.image(im) == pytest.approx(ds[i][0].numpy(), abs=1e-6)
        pixels = onnx_p.preprocess.pixels(open(f, "rb").read())
        assert onnx_p.preprocess.normalize(pixels) == pytest.approx(ds[i][0].numpy(), abs=1e-6)
    batch = np.stack([onnx_p.preprocess.load(f) for f in files])
    assert onnx_p.predict_arrays(batch) == pytest.approx(torch_p.predict_arrays(batch), abs=1e-4)


def test_a_bad_resize_is_one_line_from_the_cli(wide_data, capsys):
    from transferlab.cli import main

    assert main(["train", str(wide_data), "--model", "cnn_base", "--resize", "zoom"]) == 2
    assert "zoom" in capsys.readouterr().err


def test_inspect_reports_the_aspect_ratios_and_asks_to_compare_modes_for_wide_photos(wide_data, digits_dir):
    a = inspect_data(wide_data, progress=False)["image_size"]["aspect"]
    assert a["median"] == 3.0 and a["wide"] == 1.0 and a["tall"] == 0.0 and a["advice"] == "compare"
    assert a["crop_cuts"] == pytest.approx(2 / 3, abs=1e-4)
    square = inspect_data(digits_dir, progress=False)["image_size"]["aspect"]
    assert square["median"] == 1.0 and square["not_square"] == 0.0 and square["advice"] == "crop"
    mixed = aspect_summary([100, 100, 130, 100], [100, 100, 100, 150])  # 1 of 4 wide, 1 of 4 tall
    assert mixed["wide"] == 0.25 and mixed["tall"] == 0.25 and mixed["not_square"] == 0.5
    assert mixed["crop_cuts"] == pytest.approx(((1 - 100 / 130) + (1 - 100 / 150)) / 4, abs=1e-4)


def test_the_inspect_page_and_table_show_the_aspect_ratios(wide_data, tmp_path):
    from rich.console import Console

    from transferlab.data import load_data
    from transferlab.data.report import render_report, write_html

    splits = load_data(wide_data, progress=False)
    report = inspect_data(splits)
    html = write_html(report, splits, tmp_path / "r.html", samples_per_class=1).read_text()
    assert "a centre crop cuts 67% of the mean photo" in html and "--resize pad" in html
    console = Console(record=True, width=200)
    for table in render_report(report):
        console.print(table)
    assert "a centre crop cuts 67% of the mean photo" in console.export_text()
