"""The project's one exception type: a user error that the CLI prints in one line (exit 2)."""

from __future__ import annotations


class RobustgridError(ValueError):
    """A bad input (name, value, file, config) named in a one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
