"""Fill the git-ignored ``.gpu/`` folder that ``bench/gpu_check.sh`` carries to a bare GPU machine.

The device machine has torch and transformers but not pydantic nor the encoder packages, reaches
no index or hub, and a call carries at most 64 MiB. So: pydantic's wheels for its Python (3.12),
the packaged MiniLM re-saved in fp16 (45 MB; questlab loads it as fp32), MPNet-base's config and
tokenizer without weights (for ``--random-init``), and train.csv gzipped.

    python bench/gpu_carry.py [--train ../shared/quest/train.csv] [--mpnet-folder DIR]
    echo /.gpu/ >> .git/info/exclude      # once, so it is carried but never committed
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions"]
TOKENIZER_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=ROOT.parent / "shared" / "quest" / "train.csv")
    parser.add_argument("--mpnet-folder", type=Path, help="an MPNet folder (default: the packaged one, if installed)")
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu")
    args = parser.parse_args()
    from importlib.metadata import version

    import torch
    from safetensors.torch import load_file, save_file

    from questlab.models.pretrained import EncoderNotFoundError, resolve_encoder

    out = args.out
    (out / "whl").mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in WHEELS]  # the versions this venv runs
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
         "3.12", "--implementation", "cp", "--platform", "manylinux_2_17_x86_64", "--platform",
         "manylinux2014_x86_64", "-d", str(out / "whl"), *pins],
        check=True,
    )  # fmt: skip
    minilm, target = resolve_encoder("all-MiniLM-L6-v2"), out / "minilm-fp16"
    target.mkdir(exist_ok=True)
    for f in minilm.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, target / f.name)
    weights = load_file(minilm / "model.safetensors")
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, target / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    try:
        mpnet = args.mpnet_folder or resolve_encoder("all-mpnet-base-v2")
        (out / "mpnet-arch").mkdir(exist_ok=True)
        for name in TOKENIZER_FILES:
            shutil.copy(mpnet / name, out / "mpnet-arch" / name)
    except EncoderNotFoundError as exc:
        print(f"no MPNet folder ({exc}): the MPNet steps of gpu_check.sh will fail", file=sys.stderr)
    with args.train.open("rb") as src, gzip.open(out / "train.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB (a device call carries 64 MiB with the working tree)")


if __name__ == "__main__":
    main()
