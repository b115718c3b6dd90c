"""A worker process started by ``tune(workers=N)``: ``python -m questlab.tuning SPEC_JSON``."""

from __future__ import annotations

import json
import sys

from questlab.store.liveness import die_with_parent, sigterm_as_interrupt


def _worker_main(argv: list[str]) -> int:
    """Entry point of a worker process: ``python -m questlab.tuning SPEC_JSON``.

    The worker dies with the process that started it (a SIGKILLed ``tune`` leaves no worker
    running trials on its own); SIGTERM stops it as Ctrl-C does, its running trial marked KILLED.
    """
    spec = json.loads(argv[0])
    if "parent_pid" in spec:
        die_with_parent(int(spec["parent_pid"]))
    from questlab.console import stderr
    from questlab.tuning.study import join_study

    label = f"[worker {spec['worker']}] "
    try:
        with sigterm_as_interrupt():
            join_study(
                spec["study"],
                spec["train"],
                store=spec["store"],
                storage=spec["storage"],
                trials=spec["trials"],
                worker=spec["worker"],
                say=lambda msg: stderr(label + msg),
            )
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        stderr(f"{label}error: {exc}")
        return 2
    return 0


if __name__ == "__main__":  # a worker process started by tune(workers=N)
    sys.exit(_worker_main(sys.argv[1:]))
