"""The validation scan (broken files and reasons, duplicates) and open_image's RGB conversion."""
from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferlab.data import BrokenFile, DataWarning, load_data, load_image, open_image, scan_files
from transferlab.errors import DataError


def _noise_jpeg(size=(64, 48), seed=0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose IHDR header claims ``width x height`` pixels (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


@pytest.fixture
def broken_dir(tmp_path) -> Path:
    """class folders with good images and one broken file of every kind."""
    root = tmp_path / "d"
    for cls, seed in (("good", 1), ("other", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            (root / cls / f"ok{i}.jpg").write_bytes(_noise_jpeg(seed=seed * 10 + i))
    (root / "good" / "zero.jpg").write_bytes(b"")
    (root / "good" / "truncated.jpg").write_bytes(_noise_jpeg(seed=99)[:700])
    (root / "other" / "text.jpg").write_text("this is not an image\n")
    (root / "other" / "bomb.png").write_bytes(_png_declaring(100_000, 100_000))
    return root


def test_scan_skips_and_lists_every_broken_kind(broken_dir):
    with pytest.warns(DataWarning, match="skipped 4 broken file"):
        s = load_data(broken_dir, progress=False, workers=2)
    reasons = {Path(b.path).name: b.reason for b in s.broken}
    assert reasons["zero.jpg"] == "zero bytes"
    assert reasons["truncated.jpg"] == "truncated image"
    assert reasons["text.jpg"] == "not an image"
    assert reasons["bomb.png"].startswith("decompression bomb (")
    assert len(reasons) == 4
    assert s.counts()["train"] == {"good": 3, "other": 3} and s.counts()["val"] == {"good": 1, "other": 1}
    usable = {Path(p).name for p, _ in s.train + s.val}
    assert not usable & set(reasons)
    assert Image.MAX_IMAGE_PIXELS is not None


def test_bomb_over_lowered_limit_warning_and_error_levels(tmp_path, monkeypatch):
    # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that: both are refused, no warning leaks.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    warn_level = tmp_path / "warn.png"
    Image.new("RGB", (40, 40)).save(warn_level)     # 1600 px: Pillow's warning level
    error_level = tmp_path / "error.png"
    Image.new("RGB", (64, 64)).save(error_level)    # 4096 px: Pillow's error level
    fine = tmp_path / "fine.png"
    Image.new("RGB", (20, 20)).save(fine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any leaked PIL warning would fail the test
        info, broken = scan_files([str(warn_level), str(error_level), str(fine)], workers=2, progress=False)
        with pytest.raises(DataError, match="decompression bomb"):
            open_image(warn_level)
    assert list(info) == [str(fine)]
    assert [b.path for b in broken] == [str(warn_level), str(error_level)]
    assert all(b.reason.startswith("decompression bomb") for b in broken)


def test_open_image_errors_are_one_line_with_path(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_text("nope")
    with pytest.raises(DataError) as info:
        open_image(p)
    assert str(info.value) == f"{p}: not an image"
    with pytest.raises(DataError, match="file not found"):
        open_image(tmp_path / "missing.png")


def test_scan_never_crashes_on_junk(tmp_path):
    paths = []
    rng = np.random.default_rng(0)
    for i in range(12):  # random bytes, and real headers followed by garbage
        p = tmp_path / f"junk{i}.png"
        head = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM"][i % 5]
        p.write_bytes(head + rng.integers(0, 256, 200 + i, dtype=np.uint8).tobytes())
        paths.append(str(p))
    d = tmp_path / "a-directory.png"
    d.mkdir()
    paths.append(str(d))
    info, broken = scan_files(paths, workers=3, progress=False)
    assert info == {} and len(broken) == len(paths)
    assert all(isinstance(b, BrokenFile) and b.reason and "\n" not in b.reason for b in broken)


# ---- odd modes come out as correct RGB -------------------------------------------------------

def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def test_grayscale_palette_rgba_cmyk_16bit_to_rgb(tmp_path):
    gray = _save(Image.new("L", (8, 8), 100), tmp_path / "gray.png")
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal = _save(pal, tmp_path / "palette.gif")
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent -> white background
    rgba = _save(rgba, tmp_path / "rgba.png")
    cmyk = _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.tif")
    arr16 = np.full((8, 8), 65535, dtype=np.uint16)
    arr16[0, 0] = 32896  # 128 * 257
    sixteen = _save(Image.fromarray(arr16), tmp_path / "sixteen.png")
    assert Image.open(sixteen).mode.startswith("I")

    expected = {
        gray: {(1, 1): (100, 100, 100)},
        pal: {(1, 1): (255, 0, 0)},
        rgba: {(1, 1): (10, 20, 30), (0, 0): (255, 255, 255)},
        cmyk: {(1, 1): (255, 0, 0)},
        sixteen: {(1, 1): (255, 255, 255), (0, 0): (128, 128, 128)},
    }
    for path, pixels in expected.items():
        img = open_image(path)
        assert img.mode == "RGB" and img.size == (8, 8), path.name
        for xy, rgb in pixels.items():
            assert img.getpixel(xy) == rgb, (path.name, xy, img.getpixel(xy))
    info, broken = scan_files([str(p) for p in expected], progress=False)
    assert broken == []
    assert {Path(p).name: i.mode for p, i in info.items()}["cmyk.tif"] == "CMYK"


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(img, tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = open_image(path)
    assert out.size == (20, 40)  # portrait once rotated
    top, bottom = np.array(out)[2, 10], np.array(out)[-3, 10]
    assert top[0] > 200 and top[2] < 60      # red on top
    assert bottom[2] > 200 and bottom[0] < 60  # blue at the bottom
    info, _ = scan_files([str(path)], progress=False)
    assert (info[str(path)].width, info[str(path)].height) == (20, 40)


def test_load_image_resizes_any_shape_to_square(tmp_path):
    wide = _save(Image.new("RGB", (300, 100), (0, 128, 0)), tmp_path / "wide.png")
    tall = _save(Image.new("L", (17, 90), 50), tmp_path / "tall.bmp")
    for p in (wide, tall):
        arr = load_image(p, 37, "bilinear")
        assert arr.shape == (37, 37, 3) and arr.dtype == np.uint8 and arr.flags.writeable
    assert tuple(load_image(wide, 37)[18, 18]) == (0, 128, 0)


# ---- duplicates across splits ---------------------------------------------------------------

def test_duplicates_across_train_and_test_are_reported(tmp_path):
    root = tmp_path / "d"
    for split, n in (("train", 5), ("test", 2)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                (root / split / cls / f"{i}.jpg").write_bytes(_noise_jpeg(seed=zlib.crc32(f"{split}/{cls}/{i}".encode())))
    leaked = _noise_jpeg(seed=12345)
    (root / "train" / "a" / "leak.jpg").write_bytes(leaked)
    (root / "test" / "a" / "leak_copy.jpg").write_bytes(leaked)
    with pytest.warns(DataWarning, match="leakage"):
        s = load_data(root, progress=False)
    assert s.duplicates == [[str(root / "test" / "a" / "leak_copy.jpg"), str(root / "train" / "a" / "leak.jpg")]]


# ---- the real photos ------------------------------------------------------------------------

def test_real_photos_scan_and_convert(photos_dir, tmp_path):
    photos = sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in {".jpg", ".png", ".bmp"})
    assert photos
    info, broken = scan_files([str(p) for p in photos], progress=False)
    assert broken == [] and len(info) == len(photos)
    for p in photos:
        with Image.open(p) as ref:
            w, h = ref.size
            fmt = ref.format
        i = info[str(p)]
        assert (i.width, i.height, i.format) == (w, h, fmt)
        assert open_image(p).mode == "RGB"
