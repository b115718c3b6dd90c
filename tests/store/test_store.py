"""The run store: several processes may create the same new SQLite store at once; finding runs by tags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

OPEN = "import sys; from questlab.store import Store; Store(sys.argv[1]).list_runs(); print('ok')"


def test_processes_creating_one_new_store_at_once_do_not_collide(tmp_path: Path) -> None:
    # Without the creation lock, MLflow's schema migrations race ("duplicate column name");
    # DDP ranks opening a fresh store hit exactly this.
    store = tmp_path / "fresh-store"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]


def test_find_run_matches_every_tag_given(tmp_path: Path) -> None:
    from questlab.store import Store

    store = Store(tmp_path / "store")
    older = store.create_run("a", {"questlab.parent": "p1", "questlab.trial": "0"})
    store.create_run("b", {"questlab.parent": "p1", "questlab.trial": "1"})
    newer = store.create_run("c", {"questlab.parent": "p1", "questlab.trial": "0"})
    assert store.find_run({"questlab.parent": "p1", "questlab.trial": "0"}) in {newer, older}
    assert store.find_run({"questlab.parent": "p1", "questlab.trial": "2"}) is None
    assert store.find_run({"questlab.parent": "p2"}) is None
    assert store.get(newer).store is store  # records read their folders through the Store
