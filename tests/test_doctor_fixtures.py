"""A real photo set with planted problems, diagnosed once per test session (shared by
test_doctor.py and test_doctor_browser.py). No tests here."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

FLOWERS = ("daisy", "dandelion", "rose", "sunflower", "tulip")
#: (true class, folder it is planted in)
MOVES = (("sunflower", "daisy"), ("dandelion", "rose"), ("tulip", "sunflower"), ("daisy", "tulip"), ("rose", "dandelion"))


def screenshot(size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A browser error page: a title bar and lines of text on white."""
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, size[0], 14], fill=(40, 90, 200))
    for i, y in enumerate(range(22, size[1] - 8, 12)):
        d.text((6, y), f"Error 404 - page not found  line {i}", fill=(20, 20, 20))
    return im


def make_planted(flowers: Path, photos: Path, dst: Path, *, per_class: int = 20, test_per_class: int = 4) -> dict:
    """Copy ``per_class`` train and ``test_per_class`` test photos of each flower class into
    ``dst/{train,test}/CLASS`` and plant: 5 photos filed under a wrong class, a cropped + resized +
    re-encoded copy of a train photo in test, a blank frame, a screenshot and a photo of coffee.
    Returns the planted paths: ``{"mislabel": [...], "duplicate": [train, test], "outlier": [...]}``."""
    files = {c: sorted((flowers / c).glob("*.jpg")) for c in FLOWERS}
    for c in FLOWERS:
        for split, chunk in (("train", files[c][:per_class]), ("test", files[c][per_class:per_class + test_per_class])):
            (dst / split / c).mkdir(parents=True, exist_ok=True)
            for f in chunk:
                shutil.copy(f, dst / split / c / f.name)
    truth: dict[str, list[str]] = {"mislabel": [], "duplicate": [], "outlier": []}
    for i, (src, to) in enumerate(MOVES):
        f = files[src][per_class + test_per_class + i]
        p = dst / "train" / to / f"mislabeled_{src}_{f.name}"
        shutil.copy(f, p)
        truth["mislabel"].append(str(p.resolve()))
    f = files["rose"][3]
    im = Image.open(f).convert("RGB")
    w, h = im.size
    im = im.crop((int(0.06 * w), int(0.04 * h), int(0.97 * w), int(0.95 * h))).resize((int(w * 0.8), int(h * 0.8)))
    p = dst / "test" / "rose" / "copy_of_a_train_rose.jpg"
    im.save(p, quality=80)
    truth["duplicate"] = [str((dst / "train" / "rose" / f.name).resolve()), str(p.resolve())]
    planted = {"rose/blank.png": Image.new("RGB", (128, 128), (128, 128, 128)),
               "tulip/screenshot.png": screenshot(),
               "daisy/coffee.png": Image.open(photos / "coffee.png").convert("RGB").resize((128, 128))}
    for rel, img in planted.items():
        p = dst / "train" / rel
        img.save(p)
        truth["outlier"].append(str(p.resolve()))
    return truth


@pytest.fixture(scope="session")
def planted(shared_dir, tmp_path_factory):
    """``(root, truth, report)``: the planted flower set, diagnosed into ``root.parent / "doctor"``
    with its own feature and image cache (``TRANSFERLAB_CACHE`` in a temp folder)."""
    flowers, photos = shared_dir / "data" / "flowers", shared_dir / "data" / "photos"
    if not flowers.is_dir() or not (photos / "coffee.png").is_file():
        pytest.skip("../shared/data/flowers or ../shared/data/photos is not present")
    from transferlab.doctor import diagnose

    base = tmp_path_factory.mktemp("planted")
    root = base / "flowers"
    truth = make_planted(flowers, photos, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRANSFERLAB_CACHE", str(base / "cache"))
        report = diagnose(root, out=base / "doctor", progress=False)
        again = diagnose(root, progress=False)  # the second run reads the feature cache
    return root, truth, report, again
