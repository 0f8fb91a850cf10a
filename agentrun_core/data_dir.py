"""Directories a service writes to (its data directory, the directory of a file it creates): a directory that cannot
be created or written is a bad setting (exit code 2), named with its variable and flag, with the OS error."""

from __future__ import annotations

import os
from pathlib import Path

from agentrun_core.settings import SettingsError

DATA_DIR_SETTING = "AGENTRUN_DATA_DIR / --data-dir"


def usable_directory(path: Path, setting: str = DATA_DIR_SETTING) -> Path:
    """`path`, created (with its parents) when missing; SettingsError naming `setting` and the OS error when it
    cannot be created or is not a writable directory."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise SettingsError(f"{setting} {str(path)!r}: cannot create the directory: {reason}{where}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SettingsError(f"{setting} {str(path)!r}: the directory is not writable by this user")
    return path
