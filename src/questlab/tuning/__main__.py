"""A worker process started by ``tune(workers=N)``: ``python -m questlab.tuning SPEC_JSON``."""

from __future__ import annotations

import json
import sys

from questlab.console import stderr
from questlab.tuning.study import join_study


def _worker_main(argv: list[str]) -> int:
    """Entry point of a worker process: ``python -m questlab.tuning SPEC_JSON``."""
    spec = json.loads(argv[0])
    label = f"[worker {spec['worker']}] "
    try:
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
