"""Pretrained weights as real weight folders hold them: files chosen by content (tensor names and
shapes), names only breaking ties; ``RECIPE=FILE`` everywhere; what was loaded recorded and printed."""
from __future__ import annotations

import json
import os

import pytest
from safetensors.torch import save_file

import transferlab as tl
from transferlab.cli import main
from transferlab.errors import WeightsError
from transferlab.models import create_model
from transferlab.models.weights import choose_weights_file, file_shapes, parse_weights


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.delenv("TRANSFERLAB_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))


def _save_backbone(model, path):
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items()}, str(path))
    return path


def test_a_folder_file_with_any_name_is_found_by_its_tensors(weights_dir):
    # the shared folder's MobileNet v1 files are named after where they came from, not after the recipe
    m = create_model("mobilenet_v1", 3, weights=weights_dir)
    assert m.weights_info["source"].endswith("mobilenetv1_100_coral_deq.pth")
    assert "all 135 backbone tensors" in m.weights_info["chosen"]
    small = create_model("mobilenet_v1_025_tf", 3, weights=weights_dir)  # width 0.25: only its file fits
    assert small.weights_info["source"].endswith("mobilenetv1_025_224_keras_stm32.pth")
    v2 = create_model("mobilenet_v2", 3, weights=weights_dir)            # torchvision names, by order
    assert v2.weights_info["source"].endswith("mobilenet_v2-b0353104.pth") and v2.weights_info["mode"] == "by order"


def test_names_only_break_ties_and_misfits_are_explained(tmp_path):
    donor = create_model("cnn_bn", 3, input_size=32)
    folder = tmp_path / "w"
    folder.mkdir()
    _save_backbone(donor, folder / "zzz_download(3).safetensors")
    _save_backbone(donor, folder / "cnn_bn.safetensors")                  # same content, the recipe's name
    _save_backbone(create_model("cnn_base", 3, input_size=32), folder / "aaa.safetensors")  # no BN: misfit
    (folder / "notes.txt").write_text("not weights")
    model = create_model("cnn_bn", 3, input_size=32)
    path, why = choose_weights_file(model, model_recipe("cnn_bn"), str(folder))
    assert path.name == "cnn_bn.safetensors" and "1 other file(s) fit too" in why
    (folder / "cnn_bn.safetensors").unlink()
    (folder / "zzz_download(3).safetensors").unlink()
    path, why = choose_weights_file(model, model_recipe("cnn_bn"), str(folder))
    assert path is None and "aaa.safetensors" in why and "none of the 1 weight file(s)" in why
    assert list(file_shapes(folder / "aaa.safetensors"))  # read from the header


def model_recipe(name):
    from transferlab.models import get_recipe

    return get_recipe(name)


def test_an_empty_or_unfitting_folder_falls_back_to_the_package_and_says_what_it_saw(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    lite = create_model("efficientnet_lite0", 3, weights=folder)  # no file fits: the installed package
    assert "efficientnet-lite0" in lite.weights_info["source"]
    with pytest.raises(WeightsError, match="no weight files"):
        create_model("mobilenet_v2_035", 3, weights=folder)      # nothing else to fall back to


def test_recipe_equals_file_is_one_meaning_of_weights(weights_dir):
    spec = f"mobilenet_v1={weights_dir / 'mobilenetv1_100_coral_deq.pth'},mobilenet_v2={weights_dir}"
    assert parse_weights(spec, "mobilenet_v1").endswith("coral_deq.pth")
    assert parse_weights(spec, "mobilenet_v2") == str(weights_dir)
    assert parse_weights(spec, "cnn_bn") is None
    assert create_model("mobilenet_v1", 2, weights=spec).weights_info["source"].endswith("coral_deq.pth")
    assert create_model("cnn_bn", 2, weights=spec).weights_info["source"] is None  # scratch: not named, untouched
    assert create_model("cnn_bn", 2, weights=weights_dir).weights_info["source"] is None  # a folder is for transfer
    with pytest.raises(WeightsError, match="RECIPE=PATH"):
        parse_weights("mobilenet_v1=", "mobilenet_v1")
    with pytest.raises(WeightsError, match="not found"):
        create_model("mobilenet_v1", 2, weights="mobilenet_v1=/no/such/file.pth")


def test_training_records_and_prints_the_weights_it_loaded(digits_dir, weights_dir, tmp_path, capsys):
    run = tl.train(digits_dir, model="mobilenet_v1_025_tf", epochs=1, input_size=32, weights=weights_dir,
                   run_dir=tmp_path, progress=False)
    record = json.loads((run.dir / "config.json").read_text())["pretrained_weights"]
    assert record["source"].endswith("mobilenetv1_025_224_keras_stm32.pth") and record["matched"] == 135
    assert len(record["sha256"]) == 64
    out = capsys.readouterr().out
    assert "pretrained weights:" in out and "mobilenetv1_025_224_keras_stm32.pth" in out and record["sha256"][:12] in out


def test_compare_with_a_weights_folder_trains_every_model(digits_dir, weights_dir, tmp_path, capsys, monkeypatch):
    """The issue's command: a weights folder whose files are not named after the recipes."""
    out = tmp_path / "cmp"
    rc = main(["compare", str(digits_dir), "--models", "cnn_bn,mobilenet_v2,mobilenet_v1", "--weights", str(weights_dir),
               "--epochs", "1", "--input-size", "32", "--out", str(out), "--no-progress"])
    assert rc == 0
    rows = {r["model"]: r for r in json.loads((out / "leaderboard.json").read_text())["rows"]}
    assert all(rows[m]["status"] == "ok" for m in ("cnn_bn", "mobilenet_v2", "mobilenet_v1")), rows
    assert "TRANSFERLAB_WEIGHTS" not in os.environ  # no change to the process environment
