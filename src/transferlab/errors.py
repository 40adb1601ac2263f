"""Errors users can act on. The CLI prints them as one line, never a traceback."""


class TransferlabError(Exception):
    """Base class: a problem with the user's input, config or environment."""


class DataError(TransferlabError):
    """The dataset path, layout or files are unusable."""


class ConfigError(TransferlabError, ValueError):
    """A bad option value."""


class WeightsError(TransferlabError):
    """Pretrained weights are missing or do not fit the model."""


class ParityError(TransferlabError):
    """An export's outputs differ from PyTorch's by more than the tolerance; it was not written."""


class TrackingError(TransferlabError):
    """A tracker asked for with ``--trackers`` could not start."""


class CacheLimitError(DataError):
    """An image-cache array would not fit the cache's size limit (``--cache-max-gb``)."""
