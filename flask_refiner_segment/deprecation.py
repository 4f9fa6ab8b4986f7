"""Old names kept for a while: using one warns and gives its replacement."""

from __future__ import annotations

import typing as t
import warnings

#: The version that removes the deprecated names.
REMOVED_IN = "0.3"

#: Old name -> (the object that replaces it, what to use instead).
Moved = t.Mapping[str, tuple[t.Any, str]]


def warn(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new``, attributed to the
    caller of the function that calls this one (``stacklevel`` counts from here)."""
    warnings.warn(
        f"'{old}' is deprecated and will be removed in {REMOVED_IN}. Use '{new}'.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def moved(module: str, name: str, table: Moved) -> t.Any:
    """A module's ``__getattr__`` for names that moved (PEP 562)."""
    if name not in table:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    value, new = table[name]
    # warn <- moved <- the module's __getattr__ <- the code that used the name
    warn(f"{module}.{name}", new, stacklevel=4)
    return value
