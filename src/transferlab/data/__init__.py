"""The data layer: layouts, stratified split, validation scan, inspect report, transforms, image
cache and loaders. See ``docs/ARCHITECTURE.md`` for the contract.

>>> from transferlab.data import load_data, data_config, build_transform, ImageDataset, make_loader
>>> splits = load_data("DATA", val_ratio=0.2, seed=0)                         # doctest: +SKIP
>>> cfg = data_config(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
>>> train = ImageDataset(splits.train, cfg, build_transform(cfg, train=True, augment="light"),
...                      cache_dir=True)                                      # doctest: +SKIP
>>> loader = make_loader(train, batch_size=32, shuffle=True, seed=0)          # doctest: +SKIP

Modules: :mod:`.splits` (types), :mod:`.images` (decoding), :mod:`.scan` (validation scan),
:mod:`.layout` (``load_data``), :mod:`.transforms`, :mod:`.cache`, :mod:`.dataset`,
:mod:`.loader`, :mod:`.report` (``inspect_data``).
"""
from __future__ import annotations

from .cache import build_cache, default_cache_dir
from .dataset import ImageDataset
from .images import load_image, open_image, resize_image, to_rgb
from .layout import load_data, stratified_split
from .loader import make_loader
from .report import inspect_data, write_html, write_file_csv
from .scan import scan_files
from .splits import IMAGE_EXTENSIONS, BrokenFile, DataSplits, DataWarning, ImageInfo, Sample
from .transforms import AUGMENTS, build_transform, data_config

__all__ = [
    "IMAGE_EXTENSIONS", "Sample", "BrokenFile", "ImageInfo", "DataSplits", "DataWarning",
    "load_data", "stratified_split", "scan_files",
    "open_image", "resize_image", "load_image", "to_rgb",
    "data_config", "build_transform", "AUGMENTS",
    "ImageDataset", "build_cache", "default_cache_dir", "make_loader",
    "inspect_data", "write_html", "write_file_csv",
]
