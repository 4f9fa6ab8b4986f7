"""Old names kept for a while: each warns and calls its replacement."""

from __future__ import annotations

import functools
import typing as t
import warnings

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

#: The version that removes the deprecated names.
REMOVED_IN = "0.3"


def alias(func: F, old: str, new: str) -> F:
    """``func`` under its old name ``old``, warning that ``new`` replaces it."""

    @functools.wraps(func)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        warnings.warn(
            f"'{old}' is deprecated and will be removed in {REMOVED_IN}."
            f" Use '{new}' instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return func(*args, **kwargs)

    return t.cast(F, wrapper)
