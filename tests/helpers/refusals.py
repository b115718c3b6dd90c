"""Bad input at the command line: exit 2, one ``error:`` line, nothing written."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from typer.testing import CliRunner

from questlab.cli import app


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with a digest of its bytes (folders and links marked as such)."""

    def what(p: Path) -> str:
        if p.is_symlink():
            return f"link -> {os.readlink(p)}"
        return "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()

    return {str(p.relative_to(folder)): what(p) for p in sorted(folder.rglob("*"))}


def refused(folder: Path, argv: list[str], *words: str) -> str:
    """Run ``questlab argv`` (working in ``folder``): exit 2, one error line holding ``words``,
    nothing under ``folder`` written or changed; return the line."""
    before = snapshot(folder)
    result = CliRunner().invoke(app, argv)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert "Traceback" not in result.output
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    missing = [w for w in words if w not in lines[0]]
    assert not missing, f"{missing} not in: {lines[0]}"
    assert snapshot(folder) == before, "something was written or overwritten"
    return lines[0]
