"""Reading a ``${name}`` template from the configuration (any YAML value), compiled once.

Apart from :mod:`loadsvc.config._data` so that the user kinds (which the spec module
imports) can read templates without importing the spec back.
"""

from __future__ import annotations

import dataclasses

import yaml

from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._values import Invalid, plain
from loadsvc.templating import Template, TemplateError, compile_template

__all__ = ["read_template", "read_template_at"]


def read_template(fields: Fields, key: str) -> Template | None:
    """The template under ``key`` (any YAML value), compiled; recorded for the scenario's
    check of its names. None when absent or (reported) malformed."""
    node = fields.value_node(key)
    if node is None:
        return None
    return read_template_at(fields.reader, fields.at(key), node)


def read_template_at(
    reader: Reader, path: str, node: yaml.Node, *, local: str | None = None
) -> Template | None:
    """The template of ``node`` at ``path``, as :func:`read_template`. Names under
    ``local.`` (``${frame.id}`` with ``local="frame"``) are filled by the caller, not from
    the data (``${frame}`` alone is left for the caller to report), so the scenario's check
    leaves them out."""
    try:
        template = compile_template(plain()(node))
    except (Invalid, TemplateError) as exc:
        reader.error(path, node, str(exc))
        return None
    checked = template
    if local is not None:
        own = frozenset(n for n in template.names if n == local or n.startswith(f"{local}."))
        checked = dataclasses.replace(template, names=template.names - own)
    reader.templates.append((path, node, checked))
    return template
