"""Decode any image file to correct RGB, and resize it to the square ``load_size`` the models use.

* :func:`open_image` -- decoded RGB, EXIF-rotated, odd modes converted properly (grayscale,
  palette, RGBA/LA/PA composited on white, CMYK, 16-bit ``I;16``, 32-bit ``I``, float ``F``).
  Any failure raises :class:`~transferlab.errors.DataError` ``"<path>: <reason>"``.
* :func:`resize_image` -- shorter side to ``L`` with the given interpolation, centre crop ``L x L``.
* :func:`load_image` -- both, as a ``uint8`` array ``[L, L, 3]`` (what the image cache stores).

>>> img = open_image("photo.jpg")                         # doctest: +SKIP
>>> arr = load_image("photo.jpg", 256, "bilinear")        # doctest: +SKIP
>>> arr.shape, arr.dtype                                  # doctest: +SKIP
((256, 256, 3), dtype('uint8'))

Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``) is respected, never disabled: an
image over it is refused with reason ``"decompression bomb (W x H pixels > limit)"``.
"""
from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ConfigError, DataError
from .types import IMAGE_EXTENSIONS

INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

_WHITE = (255, 255, 255)
# the letterbox of resize mode "pad": ImageNet's mean colour, which normalises to about 0 (no signal)
PAD_FILL = (124, 116, 104)


def resample_filter(interpolation: str) -> Image.Resampling:
    """PIL resampling filter for an interpolation name; unknown names raise ConfigError."""
    try:
        return INTERPOLATIONS[str(interpolation).lower()]
    except KeyError:
        raise ConfigError(
            f"unknown interpolation {interpolation!r}; choose one of: {', '.join(INTERPOLATIONS)}"
        ) from None


@contextlib.contextmanager
def quiet_pil_warnings():
    """Silence Pillow's warnings (decompression bomb, odd EXIF/palette) while decoding.

    The bomb check itself is done explicitly by :func:`open_image`, so nothing is lost. The
    warnings filter is process-global, so this only acts in the main thread; code that decodes in
    worker threads wraps the whole pool in it from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL(\.|$)")
        yield


def _bomb_reason(size: tuple[int, int]) -> str | None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return None
    w, h = size
    if w * h > limit:
        return f"decompression bomb ({w} x {h} = {w * h} pixels > limit {int(limit)})"
    return None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB with correct colours (alpha composited on white)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr = arr.astype(np.float32) / 257.0  # 0..65535 -> 0..255
        elif mode == "I":
            # 16-bit files often open as "I"; scale when values go past 8 bits.
            arr = arr.astype(np.float32)
            if arr.max(initial=0) > 255:
                arr = arr / 257.0
        else:  # "F"
            arr = arr.astype(np.float32)
            if arr.max(initial=0) <= 1.0:
                arr = arr * 255.0
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1))
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX ...


def describe_error(exc: BaseException) -> str:
    """A short human reason for a decoding failure."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        detail = str(exc).split(", could be")[0]
        return f"decompression bomb ({detail})"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    text = str(exc)
    if "truncated" in text.lower() or "broken data stream" in text.lower() or "premature end" in text.lower():
        return "truncated image"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, MemoryError):
        return "too large to decode (out of memory)"
    first = text.splitlines()[0] if text else ""
    return f"unreadable image ({type(exc).__name__}: {first})" if first else f"unreadable image ({type(exc).__name__})"


def _decode(fp: BinaryIO | str, draft_size: int | None = None) -> tuple[Image.Image, str, str]:
    """Open + fully decode; returns (RGB image, PIL format, original mode). Raises on failure."""
    with Image.open(fp) as im:
        reason = _bomb_reason(im.size)
        if reason:
            raise _Refused(reason)
        fmt, mode = im.format or "?", im.mode
        if draft_size and fmt == "JPEG":
            # Let libjpeg decode at a reduced scale that still covers draft_size on both sides.
            im.draft("RGB" if mode in ("RGB", "YCbCr") else None, (draft_size, draft_size))
        im.load()
        try:
            rotated = ImageOps.exif_transpose(im)
        except Exception:  # corrupt EXIF: keep the pixels as stored
            rotated = im
        rgb = to_rgb(rotated if rotated is not None else im)
        if rgb is im:
            rgb = im.copy()  # detach from the file handle closed by the with-block
    return rgb, fmt, mode


class _Refused(Exception):
    """Internal: a file refused before decoding (reason already human)."""


def open_image_info(source: str | os.PathLike | bytes | BinaryIO, *, draft_size: int | None = None,
                    name: str | None = None) -> tuple[Image.Image, str, str]:
    """Like :func:`open_image` but also returns the PIL format name and the original mode."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "<image>")
    try:
        if isinstance(source, (str, os.PathLike)):
            if os.path.isfile(source) and os.path.getsize(source) == 0:
                raise _Refused("zero bytes")
            fp: BinaryIO | str = str(source)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise _Refused("zero bytes")
            fp = io.BytesIO(bytes(source))
        else:
            fp = source
        with quiet_pil_warnings():
            return _decode(fp, draft_size)
    except _Refused as exc:
        raise DataError(f"{label}: {exc}") from None
    except Exception as exc:  # every decoder failure becomes one clear line
        raise DataError(f"{label}: {describe_error(exc)}") from None


def open_image(path: str | os.PathLike | bytes | BinaryIO) -> Image.Image:
    """Decode an image file (or bytes / a file object) to an RGB PIL image, EXIF-rotated.

    Raises :class:`~transferlab.errors.DataError` ``"<path>: <reason>"`` for anything unreadable.

    >>> open_image("scan.tif").mode     # doctest: +SKIP
    'RGB'
    """
    return open_image_info(path)[0]


def resize_image(img: Image.Image, load_size: int, interpolation: str = "bilinear", mode: str = "crop") -> Image.Image:
    """Make ``img`` a ``load_size x load_size`` square, by ``mode``:

    * ``crop``: shorter side to ``load_size``, centre crop (the longer side's ends are cut off);
    * ``pad``: longer side to ``load_size``, centred on a ``PAD_FILL`` square (letterbox: the whole photo,
      its aspect ratio kept);
    * ``stretch``: both sides to ``load_size`` (the whole photo, squashed).

    >>> [resize_image(Image.new("RGB", (640, 480)), 100, mode=m).size for m in ("crop", "pad", "stretch")]
    [(100, 100), (100, 100), (100, 100)]
    """
    size, method = (int(load_size), int(load_size)), resample_filter(interpolation)
    if mode == "crop":
        return ImageOps.fit(img, size, method=method)
    if mode == "pad":
        return ImageOps.pad(img, size, method=method, color=PAD_FILL)
    if mode == "stretch":
        return img.resize(size, method)
    raise ConfigError(f"unknown resize mode {mode!r}; choose one of: crop, pad, stretch")


def load_image(path: str | os.PathLike | bytes | BinaryIO, load_size: int, interpolation: str = "bilinear",
               mode: str = "crop") -> np.ndarray:
    """Decode + resize (:func:`resize_image`, ``mode``) to a ``uint8`` array ``[load_size, load_size, 3]``
    (HWC, RGB).

    This is the one function both the uncached and the cached dataset paths use, so they return
    identical pixels. JPEGs are decoded at a reduced DCT scale when that still covers ``load_size``.
    """
    img = open_image_info(path, draft_size=int(load_size))[0]
    return np.array(resize_image(img, load_size, interpolation, mode), dtype=np.uint8)


def is_image_name(path: str | Path) -> bool:
    """True for a visible file whose lower-cased suffix is in IMAGE_EXTENSIONS."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
