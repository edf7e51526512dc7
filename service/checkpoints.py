"""Which files a request may load as ``checkpoint:PATH`` models: regular files under ``--checkpoint-dir``.

A path that does not exist, lies outside every directory (named directly, through ``..`` or
through a symlink), or is not a regular file gets one and the same answer, so that a client
cannot learn anything about the server's disk outside those directories. A relative path is
looked up in each directory in turn. The accepted name is the file's resolved path, so every
spelling of one file is one model (and one cache entry).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from priorviz.errors import clip_text
from priorviz.models._api import ModelNotFoundError
from priorviz.models.checkpoint import PREFIX


class CheckpointDirectories:
    def __init__(self, directories: Sequence[str]) -> None:
        self.roots = tuple(Path(directory).resolve() for directory in directories)

    def model_name(self, name: str) -> str:
        """``checkpoint:REALPATH`` for a request's ``checkpoint:PATH``; raises ``ModelNotFoundError``."""
        if not self.roots:
            raise ModelNotFoundError(f"model {clip_text(name)!r}: checkpoint models are disabled on this server")
        requested = name.removeprefix(PREFIX)
        candidates = [requested] if os.path.isabs(requested) else [os.path.join(root, requested) for root in self.roots]
        for candidate in candidates:
            found = self._allowed_file(candidate)
            if found is not None:
                return PREFIX + str(found)
        raise ModelNotFoundError(
            f"model {clip_text(name)!r}: no checkpoint file by that name in this server's checkpoint directories"
        )

    def _allowed_file(self, candidate: str) -> Path | None:
        try:
            real = Path(os.path.realpath(candidate))
            inside = any(real.is_relative_to(root) for root in self.roots)
            return real if inside and real.is_file() else None
        except (OSError, ValueError):  # a name too long, an embedded NUL, a symlink loop
            return None
