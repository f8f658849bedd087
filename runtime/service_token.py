"""The bearer token of ``lexedge serve``, shared by the service and its client: read from a
file or the environment, never from a command-line argument (``ps`` shows those to every user
of the machine; issue 22)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import LexedgeError

#: Where the token may come from besides ``--token-file``.
TOKEN_ENV = "LEXEDGE_TOKEN"
#: Where the write endpoints' token may come from besides ``--admin-token-file``.
ADMIN_TOKEN_ENV = "LEXEDGE_ADMIN_TOKEN"


def read_token(token_file: Path | None, env: str = TOKEN_ENV) -> str | None:
    """The token: ``token_file``'s first line, else the environment variable ``env``, else
    none."""
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").strip().splitlines()
        except OSError as error:
            raise LexedgeError(f"{token_file}: cannot read the token file "
                               f"({error.strerror})") from None
        if not lines or not lines[0].strip():
            raise LexedgeError(f"{token_file}: the token file is empty")
        return lines[0].strip()
    return os.environ.get(env) or None
