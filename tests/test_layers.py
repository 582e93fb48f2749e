"""The import layers of docs/architecture.md, enforced by import-linter."""

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_import_layers_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
