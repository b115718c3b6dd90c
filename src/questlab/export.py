"""``questlab export``: a finished run written as a bundle folder (:mod:`questlab.bundle`).

MLflow models logged by questlab 0.9.0 name this module as their loader: :func:`_load_pyfunc`
forwards to :mod:`questlab.mlflow_model`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from questlab.bundle import BUNDLE_FORMAT, BundleModel, load_bundle, read_manifest, write_bundle
from questlab.errors import BundleError
from questlab.mlflow_model import _load_pyfunc
from questlab.store import Store, liveness

__all__ = ["BUNDLE_FORMAT", "BundleError", "BundleModel", "_load_pyfunc", "export_run", "load_bundle", "read_manifest"]


def export_run(store: Store, run_id: str, dest: Path) -> Path:
    """Write run ``run_id`` as a bundle in ``dest`` (new or empty); nothing half-written on failure.

    The bundle is built in a temporary folder beside ``dest`` and renamed into place at the end.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        kind = "a file" if not dest.is_dir() else "a folder that is not empty"
        raise BundleError(f"{dest} is {kind}: export into a new or empty folder (nothing was written)")
    record = store.get(run_id)
    if liveness.is_dead(record.status, record.tags):  # still marked RUNNING, but its process is gone
        fix = (f"resume it with questlab run --resume {record.run_id} --train TRAIN.csv, then export it"
               if record.kind == "cv" else "make it again, then export the new run")  # fmt: skip
        gone = f"its process is gone or stalled: {liveness.describe(record.tags)}"
        raise BundleError(f"run {record.run_id} is dead, not running ({gone}): {fix}")
    if record.status != "FINISHED":
        raise BundleError(f"run {record.run_id} is {record.status.lower()}: only finished runs can be exported")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a killed export's half-built bundle (SIGKILL cannot be caught) is removed by the next one
    liveness.remove_orphaned_dirs(dest.parent, f".{dest.name}.tmp-")
    tmp = liveness.owned_temp_dir(f".{dest.name}.tmp-", dest.parent)
    try:
        write_bundle(store, record.run_id, tmp)
        if dest.exists():
            dest.rmdir()
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
