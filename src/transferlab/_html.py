"""HTML pages from the Jinja2 templates in ``transferlab/templates/`` (one per page, each extending
``base.html``): the doctor's ``doctor.html``, the comparison's, inspect's and tune's ``report.html``.

Autoescaping is on: every value a template prints is escaped (file paths, class names, messages)
unless it is a :class:`markupsafe.Markup`, which a caller passes only for HTML it built itself.

>>> from markupsafe import Markup
>>> environment().from_string("<b>{{ name }}</b> {{ tag }}").render(name="<script>", tag=Markup("<i>ok</i>"))
'<b>&lt;script&gt;</b> <i>ok</i>'
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def environment():
    """The one :class:`jinja2.Environment` of the package's templates (built on first use: jinja2 is
    imported only by the commands that write a page)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(loader=PackageLoader("transferlab", "templates"), autoescape=select_autoescape(["html"]),
                       trim_blocks=True, lstrip_blocks=True)


def render(name: str, /, **context: Any) -> str:
    """Template ``name`` (e.g. ``"doctor.html"``) rendered with ``context``."""
    return environment().get_template(name).render(**context)
