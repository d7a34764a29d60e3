"""What a field may be called: fields are listed by name, comma-separated, on the command line
(``--context-fields``), in dims CSVs and in a model's metadata, so a name must survive such a list."""

from __future__ import annotations

from .errors import Fm2OnnxError


def check_field_name(name, where: str = "") -> None:
    """Refuse a name that is empty, holds a comma or a control character, or has surrounding spaces;
    ``where`` (the file, the entry) leads the message when given."""
    if not isinstance(name, str) or not name or name != name.strip() or "," in name or not name.isprintable():
        raise Fm2OnnxError(f"{where + ': ' if where else ''}field name {name!r}: a name must be non-empty text "
                           "without commas, control characters or surrounding spaces (fields are listed "
                           "comma-separated)")

