"""A bundle's loader runs none of the bundle's code and reads nothing outside it.

New bundles hold no pickle (arrays in .npz/.safetensors, settings in JSON); the pickled TF-IDF
state of questlab <= 0.9.0 is read through an allowlist; every path a bundle names is resolved
and must stay inside it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import joblib
import pytest

from questlab.bundle import MANIFEST, load_bundle
from questlab.errors import QuestlabError
from questlab.provenance import file_sha256

RECORDED = Path(__file__).resolve().parent / "data" / "v0_9_0"


class _Payload:
    """Pickles as a call to os.system: what an attacker puts in a model file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rehash(bundle: Path) -> None:
    """Make the manifest agree with the files again, as an attacker would."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"] = {
        p.relative_to(bundle).as_posix(): file_sha256(p)
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    (bundle / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def new_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import questlab as ql
    from questlab.export import export_run

    tmp = tmp_path_factory.mktemp("safety")
    config = {
        "name": "tfidf",
        "seed": 1,
        "folds": {"n_splits": 2, "seed": 1},
        "bootstrap": 5,
        "parallel_folds": 1,
        "model": {"name": "tfidf", "params": {"min_df": 1, "max_features": 300}},
    }
    run = ql.run(config, RECORDED / "train.csv", store=tmp / "store", quiet=True)
    return export_run(ql.load_run(run.id, store=tmp / "store").record.store, run.id, tmp / "bundle")


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(src, dst)
    return dst


def test_a_new_bundle_holds_no_pickle(new_bundle: Path) -> None:
    import numpy as np

    for path in new_bundle.rglob("*"):
        if not path.is_file():
            continue
        assert not path.read_bytes().startswith(b"\x80"), f"{path} is a pickle"
        if path.suffix in (".npz", ".npy"):
            with np.load(path, allow_pickle=False) as npz:  # raises if any array needs pickle
                [npz[k] for k in npz.files]
    assert not list(new_bundle.rglob("*.joblib")) and not list(new_bundle.rglob("*.pkl"))


@pytest.mark.parametrize("which", ["new", "recorded 0.9.0"])
def test_a_planted_pickle_is_refused_without_running_it(which: str, new_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(new_bundle if which == "new" else RECORDED / "bundle", tmp_path)
    marker = tmp_path / "pwned"
    for fold in bundle.rglob("fold_0"):
        (fold / "tfidf.npz").unlink(missing_ok=True)  # the loader then falls back to the legacy file
        joblib.dump({"columns": _Payload(marker)}, fold / "tfidf.joblib")
    _rehash(bundle)
    with pytest.raises(QuestlabError, match="refused"):
        load_bundle(bundle)
    assert not marker.exists(), "the bundle's payload ran"


def test_the_recorded_0_9_0_pickles_still_load(tmp_path: Path) -> None:
    assert load_bundle(_copy(RECORDED / "bundle", tmp_path)) is not None


def test_fold_paths_that_leave_the_bundle_are_refused(new_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(new_bundle, tmp_path)
    outside = tmp_path / "outside" / "fold_x"
    shutil.copytree(bundle / "predictor" / "fold_0", outside)
    tree = json.loads((bundle / "predictor" / "predictor.json").read_text())
    tree["folds"] = [0, "0/../../../outside/fold_x"]
    (bundle / "predictor" / "predictor.json").write_text(json.dumps(tree))
    _rehash(bundle)
    with pytest.raises(QuestlabError, match="predictor"):
        load_bundle(bundle)


def test_a_manifest_entry_outside_the_bundle_is_refused(new_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(new_bundle, tmp_path)
    (tmp_path / "secret.txt").write_text("not the bundle's")
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"]["../secret.txt"] = file_sha256(tmp_path / "secret.txt")
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(QuestlabError, match="outside the bundle"):
        load_bundle(bundle)


def test_a_link_out_of_the_bundle_is_refused(new_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(new_bundle, tmp_path)
    fold = bundle / "predictor" / "fold_1"
    shutil.copytree(fold, tmp_path / "elsewhere")
    shutil.rmtree(fold)
    fold.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(QuestlabError, match="outside the bundle"):
        load_bundle(bundle)


def test_a_killed_exports_half_built_bundle_is_cleaned_up(new_bundle: Path, tmp_path: Path) -> None:
    """SIGKILL leaves the hidden build folder behind; the next export beside it removes it."""
    import subprocess
    import sys

    import questlab as ql
    from questlab.export import export_run

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".bundle.tmp-{dead.stdout.strip()}-abcd1234"
    (stale / "predictor").mkdir(parents=True)
    live = tmp_path / f".bundle.tmp-{os.getpid()}-efgh5678"  # a build in progress (this process) is kept
    live.mkdir()
    run = ql.load_run(json.loads((RECORDED / "expected" / "runs.json").read_text())["tfidf"], store=_store(tmp_path))
    export_run(run.record.store, run.id, tmp_path / "bundle")
    assert not stale.exists() and live.exists() and (tmp_path / "bundle" / MANIFEST).exists()


def _store(tmp_path: Path):
    from questlab.store import Store

    shutil.copytree(RECORDED / "store", tmp_path / "store")
    return Store(tmp_path / "store" / "mlflow.db", create=False)
