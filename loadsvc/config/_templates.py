"""Reading a ``${name}`` template from the configuration (any YAML value), compiled once.

Apart from :mod:`loadsvc.config._data` so that the user kinds (which the spec module
imports) can read templates without importing the spec back.
"""

from __future__ import annotations

from loadsvc.config._nodes import Fields
from loadsvc.config._values import Invalid, plain
from loadsvc.templating import Template, TemplateError, compile_template

__all__ = ["read_template"]


def read_template(fields: Fields, key: str) -> Template | None:
    """The template under ``key`` (any YAML value), compiled; recorded for the scenario's
    check of its names. None when absent or (reported) malformed."""
    node = fields.value_node(key)
    if node is None:
        return None
    try:
        template = compile_template(plain()(node))
    except (Invalid, TemplateError) as exc:
        fields.reader.error(fields.at(key), node, str(exc))
        return None
    fields.reader.templates.append((fields.at(key), node, template))
    return template
