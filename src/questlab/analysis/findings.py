"""The findings log: a lab notebook of what was learned, about which runs, kept in the run store.

Findings are runs of their own experiment (``store.FINDINGS_EXPERIMENT``) in the same MLflow
store as the CV runs, so they travel with the store, and deleting or failing a CV run leaves
them in place (the run ids they cite stay, even when the run is gone).
"""

from __future__ import annotations

from questlab.analysis.verdict import Verdict
from questlab.errors import UsageError
from questlab.store import Finding, RunNotFoundError, Store


def add_finding(store: Store, text: str, runs: list[str], tags: list[str] | None = None) -> Finding:
    """Record a finding about ``runs`` (ids or unique prefixes; at least one); returns it."""
    if not runs:
        raise UsageError("name the run(s) the finding is about with --run RUN_ID")
    run_ids = [store.resolve_id(r) for r in runs]
    finding_id = store.add_finding(text, run_ids, tags=tags or [])
    return next(f for f in store.list_findings() if f.finding_id == finding_id)


def list_findings(store: Store, run: str | None = None, tag: str | None = None) -> list[Finding]:
    """The log, newest first; only those about ``run`` (id or prefix, deleted runs too) or with ``tag``."""
    found = store.list_findings()
    if run is not None:
        try:
            run_id = store.resolve_id(run)
            found = [f for f in found if run_id in f.runs]
        except RunNotFoundError:
            # A deleted run no longer resolves: match the ids the findings cite.
            found = [f for f in found if any(r.startswith(run) for r in f.runs)]
            if not found:
                raise
    if tag is not None:
        found = [f for f in found if tag in f.tags]
    return found


def record_verdicts(store: Store, run_id: str, verdicts: list[Verdict]) -> list[str]:
    """Offer errors and warnings as findings tagged ``diagnose``; skip those already recorded verbatim."""
    run_id = store.resolve_id(run_id)
    known = {f.text for f in store.list_findings(run_id)}
    added = []
    for v in verdicts:
        if v.severity not in ("error", "warning"):
            continue
        text = f"[{v.severity}] {v.code}: {v.message}"
        if text in known:
            continue
        added.append(store.add_finding(text, [run_id], tags=["diagnose", v.severity, v.code], source="diagnose"))
        known.add(text)
    return added
