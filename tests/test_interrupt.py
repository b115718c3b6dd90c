"""Ctrl-C during a run with parallel folds: one questlab message, exit 130, no worker left behind."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from helpers.paths import require_quest
from helpers.processes import start_tfidf_run, wait_for_folds


def _ignores_sigint(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(sys.platform != "linux", reason="process groups and PR_SET_PDEATHSIG as on Linux")
def test_ctrl_c_with_parallel_folds_prints_one_message_and_leaves_no_worker(tmp_path: Path) -> None:
    import psutil

    require_quest()
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        # Its own session, like a shell job: Ctrl-C reaches the whole process group, workers included.
        # SIGINT at its default, as in a terminal's foreground job: a shell starts background jobs
        # (`bash .ci/run &`) with SIGINT ignored, the run would inherit that and never see Ctrl-C.
        proc, store = start_tfidf_run(
            tmp_path, "ctrlc", parallel_folds=2, stderr=stderr, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        parent = psutil.Process(proc.pid)
        wait_for_folds(proc, store, 2)
        workers = parent.children(recursive=True)
        assert workers
        # The mechanism: a worker ignores SIGINT (bit 2 of SigIgn), so Ctrl-C cannot raise in it.
        ignoring = {w.pid: _ignores_sigint(w.pid) for w in workers if "resource_tracker" not in " ".join(w.cmdline())}
        assert ignoring and all(ignoring.values()), f"workers that would raise KeyboardInterrupt: {ignoring}"
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        code = proc.wait(timeout=60)
    _, alive = psutil.wait_procs(workers, timeout=20)
    text = err.read_text()
    assert not alive, f"orphaned fold workers: {[w.pid for w in alive]}"
    assert code == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    (run_id,) = re.findall(r"questlab run --resume ([0-9a-f]{32})", text)
    assert text.count("interrupted:") == 1, text
    assert run_id in text
