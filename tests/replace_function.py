"""Swap a function for another in every loaded module that holds it, under its own name: the module
that defines it and each one that imported it by name (``from .ort import session``)."""

from __future__ import annotations

import sys
from typing import Callable


def replace_everywhere(original: Callable, replacement: Callable) -> None:
    name = original.__name__
    for module in list(sys.modules.values()):
        if getattr(module, name, None) is original:
            setattr(module, name, replacement)
