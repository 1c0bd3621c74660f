"""The wheel ships the CUDA sources inside the package, and the console script is declared."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_contains_kernels(tmp_path):
    pytest.importorskip("build")
    pytest.importorskip("hatchling")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for source in (ROOT / "kernels").iterdir():
        assert f"toolkit/kernels/{source.name}" in names
    assert "toolkit/__init__.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "toolkit = toolkit.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
