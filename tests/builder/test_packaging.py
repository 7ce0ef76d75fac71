"""A plain (non-editable) install carries everything Shipway reads from its
own files: the bundled buildpacks, the run containers' entrypoint, the
migrations and the API description."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from builder.buildpacks import DETECT_ORDER
from tests.conftest import ROOT


def test_the_wheel_carries_the_data_files(tmp_path: Path) -> None:
    # From a copy: pip builds in the source tree and leaves build/ behind.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("shipway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for pack in DETECT_ORDER:
        for script in ("detect", "compile", "release"):
            assert f"buildpacks/{pack}/bin/{script}" in names
    assert "buildpacks/env.sh" in names
    assert {"runner/files/entrypoint.sh", "runner/files/hot-upgrade.sh"} <= names
    assert "controller/openapi.yaml" in names
    assert any(n.startswith("controller/alembic/versions/") and n.endswith(".py") for n in names)
