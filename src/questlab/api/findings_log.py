"""The findings log from code: a lab notebook of what was learned, about which runs, kept in the store.

``ql.findings()`` lists it (newest first), ``ql.add_finding``, ``ql.edit_finding`` and
``ql.remove_finding`` change it; they call :mod:`questlab.analysis.findings`, as ``questlab
findings`` and ``questlab finding add`` do. Runs are given as ``Run`` objects, ids or unique prefixes.
"""

from __future__ import annotations

from collections.abc import Sequence

from questlab.analysis import findings as log
from questlab.analysis.findings import Finding
from questlab.api.objects import Run, StoreLike
from questlab.store import as_store

RunLike = Run | str


def _ids(runs: RunLike | Sequence[RunLike]) -> list[str]:
    items = [runs] if isinstance(runs, Run | str) else list(runs)
    return [r.id if isinstance(r, Run) else str(r) for r in items]


def _store(store: StoreLike, runs: RunLike | Sequence[RunLike] | None = None, create: bool = False):
    if store is None and runs is not None:
        items = [runs] if isinstance(runs, Run | str) else list(runs)
        given = next((r.store for r in items if isinstance(r, Run)), None)
        if given is not None:
            return given
    return as_store(store, create=create)


def findings(run: RunLike | None = None, tag: str | None = None, store: StoreLike = None) -> list[Finding]:
    """The findings log, newest first; only those about ``run`` (deleted runs too) or with ``tag``."""
    st = _store(store, run)
    return log.list_findings(st, run=None if run is None else _ids(run)[0], tag=tag)


def add_finding(
    text: str,
    runs: RunLike | Sequence[RunLike],
    tags: Sequence[str] = (),
    store: StoreLike = None,
) -> Finding:
    """Record a finding about one or more runs (at least one); returns it (``finding.finding_id``)."""
    return log.add_finding(_store(store, runs, create=True), text, _ids(runs), list(tags))


def edit_finding(
    finding_id: str | Finding,
    text: str | None = None,
    *,
    runs: RunLike | Sequence[RunLike] | None = None,
    tags: Sequence[str] | None = None,
    store: StoreLike = None,
) -> Finding:
    """Change a finding's text, cited runs and/or tags (``None`` keeps them); returns it as it now reads."""
    fid = finding_id.finding_id if isinstance(finding_id, Finding) else finding_id
    return log.edit_finding(
        _store(store, runs),
        fid,
        text=text,
        runs=None if runs is None else _ids(runs),
        tags=None if tags is None else list(tags),
    )


def remove_finding(finding_id: str | Finding, store: StoreLike = None) -> Finding:
    """Remove a finding from the log (the runs it cites stay); returns what it held."""
    fid = finding_id.finding_id if isinstance(finding_id, Finding) else finding_id
    return log.remove_finding(as_store(store), fid)


__all__ = ["Finding", "add_finding", "edit_finding", "findings", "remove_finding"]
