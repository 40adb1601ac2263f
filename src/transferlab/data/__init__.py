"""The data layer: layouts, stratified split, validation scan, inspect report, transforms, image
cache, loaders and the built-in samples. See ``docs/ARCHITECTURE.md`` for the contract.

>>> from transferlab.data import load_data, data_config, build_transform, ImageDataset, make_loader
>>> splits = load_data("DATA", val_ratio=0.2, seed=0)                         # doctest: +SKIP
>>> cfg = data_config(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
>>> train = ImageDataset(splits.train, cfg, build_transform(cfg, train=True, augment="light"),
...                      cache_dir=True)                                      # doctest: +SKIP
>>> loader = make_loader(train, batch_size=32, shuffle=True, seed=0)          # doctest: +SKIP

Modules: :mod:`.types` (Sample, BrokenFile, ImageInfo, DataSplits), :mod:`.images` (decoding),
:mod:`.scan` (validation scan), :mod:`.layout` (finding files and labels), :mod:`.split`
(stratified split), :mod:`.load` (``load_data``), :mod:`.preprocess` (the eval preprocessing in
NumPy), :mod:`.transforms` (torchvision transforms), :mod:`.cache` (image cache), :mod:`.dataset`,
:mod:`.loader`, :mod:`.report` (``inspect_data``), :mod:`.sample` (built-in samples).
"""
from __future__ import annotations

from .._lazy import lazy_exports

# Imported on first use: the ONNX predict/serve path reads images through .images and .preprocess
# only, and .transforms, .dataset and .loader load PyTorch (see transferlab/_lazy.py).
__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".types": ("IMAGE_EXTENSIONS", "Sample", "BrokenFile", "ImageInfo", "DataSplits", "DataWarning"),
    ".images": ("open_image", "resize_image", "load_image", "to_rgb"),
    ".scan": ("scan_files",),
    ".split": ("stratified_split",),
    ".load": ("load_data",),
    ".preprocess": ("data_config", "eval_array"),
    ".transforms": ("build_transform", "AUGMENTS"),
    ".cache": ("build_cache", "default_cache_dir", "default_cache_root"),
    ".dataset": ("ImageDataset",),
    ".loader": ("make_loader",),
    ".report": ("inspect_data", "write_html", "write_file_csv"),
})
