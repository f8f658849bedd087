"""Errors meant for people: one line that names the file, line or field at fault."""

from __future__ import annotations


class LexedgeError(Exception):
    """A problem with the user's input or environment, shown as one line without a traceback."""


class DataError(LexedgeError):
    """Bad input data: the message names the file and, where there is one, the line.

    Example: ``corpus.jsonl line 812: missing "text"``.
    """

    def __init__(self, path, message: str, line: int | None = None):
        where = f"{path}" if line is None else f"{path} line {line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
