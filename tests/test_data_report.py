"""inspect_data numbers, the HTML / CSV outputs, and the inspect / sample-data commands."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from transferlab.cli import main
from transferlab.data import inspect_data, load_data, write_file_csv, write_html
from transferlab.data.sample import write_sample


@pytest.fixture
def mixed_dir(tmp_path) -> Path:
    """train/test layout: cats 6 (sizes 40x30) + dogs 2 (sizes 20x50, one JPEG), a broken file
    and a cat image copied into test (leakage)."""
    root = tmp_path / "mixed"
    for i in range(6):
        p = root / "train" / "cat" / f"c{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), (i * 30, 10, 10)).save(p)
    for i in range(2):
        p = root / "train" / "dog" / f"d{i}.{'jpg' if i else 'png'}"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (20, 50), 50 + i * 100).save(p)
    (root / "test" / "cat").mkdir(parents=True)
    (root / "test" / "cat" / "copy.png").write_bytes((root / "train" / "cat" / "c0.png").read_bytes())
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"")
    return root


def test_report_numbers(mixed_dir):
    r = inspect_data(mixed_dir, val_ratio=0.5, seed=0, progress=False)
    assert r["layout"] == "train-test" and r["classes"] == ["cat", "dog"]
    assert r["counts"] == {"train": {"cat": 3, "dog": 1}, "val": {"cat": 3, "dog": 1}, "test": {"cat": 1, "dog": 0}}
    assert r["totals"] == {"train": 4, "val": 4, "test": 1, "all": 9}
    assert r["class_totals"] == {"cat": 7, "dog": 2}
    assert r["imbalance"] == {"largest": {"class": "cat", "images": 7}, "smallest": {"class": "dog", "images": 2},
                              "ratio": 3.5}
    size = r["image_size"]
    assert size["width"] == {"min": 20, "max": 40, "mean": round((7 * 40 + 2 * 20) / 9, 1)}
    assert size["height"] == {"min": 30, "max": 50, "mean": round((7 * 30 + 2 * 50) / 9, 1)}
    assert size["smallest"] == [20, 50] and size["largest"] == [40, 30]  # by area
    assert r["formats"] == {"PNG": 8, "JPEG": 1}
    assert r["modes"] == {"RGB": 7, "L": 2}
    assert r["broken"] == [{"path": str(mixed_dir / "train" / "dog" / "broken.jpg"), "reason": "zero bytes"}]
    assert len(r["duplicates"]) == 1 and r["leakage"] == 1
    dup = r["duplicates"][0]
    assert "test" in dup["splits"] and dup["classes"] == ["cat"] and dup["cross_split"] and not dup["label_conflict"]
    assert any("broken" in w for w in r["warnings"]) and any("leakage" in w for w in r["warnings"])
    json.dumps(r)  # JSON-ready


def test_report_sizes_smallest_and_largest_by_area(digits_dir, tmp_path):
    r = inspect_data(digits_dir, progress=False)
    assert r["totals"]["all"] == 300 and r["imbalance"]["ratio"] == 1.0
    assert r["image_size"]["smallest"] == r["image_size"]["largest"] == [32, 32]
    assert r["formats"] == {"PNG": 300} and r["modes"] == {"L": 300}


def test_html_is_self_contained_with_charts_and_samples(digits_dir, tmp_path):
    s = load_data(digits_dir, progress=False)
    r = inspect_data(s)
    page = write_html(r, s, tmp_path / "r" / "report.html", samples_per_class=3).read_text()
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == 2 + 10 * 3  # bar chart, size scatter, 3 samples per class
    assert base64.b64decode(imgs[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from outside
    assert "images per class" in page and "image sizes" in page
    for c in r["classes"]:  # each class's row shows its own first images, train split first
        row = re.search(rf"<h3>{c}</h3><div class='row'>(.*?)</div>", page).group(1)
        want = [p for p, y in s.train if s.classes[y] == c][:3]
        assert re.findall(r'title="([^"]+)"', row) == want
    from transferlab.errors import ConfigError

    with pytest.raises(ConfigError, match="scanned"):
        inspect_data(load_data(digits_dir, scan=False, progress=False))


def test_file_csv_round_trips_the_split(digits_dir, tmp_path):
    s = load_data(digits_dir, seed=7, progress=False)
    csv_path = write_file_csv(s, tmp_path / "files.csv")
    header = csv_path.read_text().splitlines()[0]
    assert header == "path,label,split,width,height,format,mode,bytes,sha1"
    again = load_data(csv_path, progress=False)
    assert again.layout == "csv" and again.train == s.train and again.val == s.val


def test_cli_inspect_writes_json_html_csv(digits_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", str(digits_dir), "--no-progress", "--html", "r.html", "--csv"]) == 0
    report = json.loads((tmp_path / "inspect.json").read_text())  # default JSON path
    assert report["totals"] == {"train": 240, "val": 60, "test": 0, "all": 300}
    assert (tmp_path / "r.html").stat().st_size > 1000 and (tmp_path / "inspect.csv").is_file()
    out = capsys.readouterr().out
    assert "images per class" in out and "class imbalance" in out

    assert main(["inspect", str(digits_dir), "--json", str(tmp_path / "sub" / "x.json"), "--val-ratio", "0.5",
                 "--seed", "3"]) == 0
    assert json.loads((tmp_path / "sub" / "x.json").read_text())["counts"]["val"]["0"] == 15


def test_cli_inspect_bad_path_is_one_line_error(capsys):
    assert main(["inspect", "/no/such/dir"]) == 2
    err = capsys.readouterr().err
    assert err == "error: dataset path not found: /no/such/dir\n"


def test_cli_inspect_reports_broken_files_as_warnings(mixed_dir, tmp_path, capsys):
    assert main(["inspect", str(mixed_dir), "--json", str(tmp_path / "m.json"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.out and "zero bytes" in captured.out
    assert "warning:" in captured.err and "Traceback" not in captured.err


def test_sample_data_command_and_write_sample(tmp_path, capsys):
    assert main(["sample-data", "digits", str(tmp_path / "s"), "--per-class", "3", "--size", "16"]) == 0
    assert "wrote 30 images in 10 classes" in capsys.readouterr().out
    files = sorted((tmp_path / "s").rglob("*.png"))
    assert len(files) == 30 and sorted({f.parent.name for f in files}) == [str(d) for d in range(10)]
    with Image.open(files[0]) as im:
        assert im.size == (16, 16) and im.mode == "L" and im.getextrema()[1] > 100  # real ink
    before = files[0].stat().st_mtime_ns
    write_sample(tmp_path / "s", "digits", per_class=3, size=16)  # same options: no rewrite
    assert files[0].stat().st_mtime_ns == before
    write_sample(tmp_path / "s", "digits", per_class=5, size=16)  # other options: rewritten
    assert len(list((tmp_path / "s").rglob("*.png"))) == 50
    assert main(["sample-data", "digits", str(tmp_path / "bad"), "--per-class", "0"]) == 2


def test_cifar10_sample_ships_real_photos_in_a_train_test_layout(tmp_path, capsys):
    """The default sample: 200 train + 40 test real CIFAR-10 photos per class, from the package itself."""
    from transferlab.data import load_data

    assert main(["sample-data", "cifar10", str(tmp_path / "photos")]) == 0
    assert "wrote 2400 images in 10 classes" in capsys.readouterr().out
    splits = load_data(tmp_path / "photos", progress=False)
    assert splits.layout == "train-test" and len(splits.classes) == 10 and "airplane" in splits.classes
    assert len(splits.train) + len(splits.val) == 2000 and len(splits.test) == 400
    with Image.open(splits.test[0][0]) as im:
        assert im.size == (32, 32) and im.mode == "RGB" and len(set(im.getdata())) > 100  # a photo, not a flat test pattern
    assert write_sample(tmp_path / "few", per_class=5).is_dir()
    assert len(list((tmp_path / "few" / "train").rglob("*.jpg"))) == 50
    assert len(list((tmp_path / "few" / "test").rglob("*.jpg"))) == 400
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep me")
    assert main(["sample-data", "cifar10", str(tmp_path / "taken")]) == 2  # never writes over other files
    assert "already holds other files" in capsys.readouterr().err
