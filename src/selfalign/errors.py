"""User-facing errors: each names the file, line and field at fault."""

from __future__ import annotations

from pathlib import Path


class SelfAlignError(Exception):
    """An error caused by user input; the CLI prints it without a traceback and exits 2."""


class InputError(SelfAlignError):
    def __init__(self, path: str | Path, message: str, line: int | None = None, field: str | None = None):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = self.path + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{message}")


class ServerError(SelfAlignError):
    """A generation server failed: it would not start, became unreachable, or answered something unusable. The
    stage stops before writing anything, so `--resume` re-runs it."""
