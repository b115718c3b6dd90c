"""The findings log: a lab notebook of what was learned, about which runs, kept in the run store.

Findings are finished runs of their own experiment (``FINDINGS_EXPERIMENT``) in the same MLflow
store as the CV runs, so they travel with the store, and deleting or failing a CV run leaves
them in place (the run ids they cite stay, even when the run is gone). The text, cited runs, tags
and source are the run's tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from questlab.analysis.verdict import Verdict
from questlab.errors import RunNotFoundError, UsageError
from questlab.store import Store

FINDINGS_EXPERIMENT = "questlab-findings"
MAX_FINDING_CHARS = 5000  # MLflow tag values are capped (5000 chars in older MLflow versions)


@dataclass
class Finding:
    """One entry of the findings log: what was learned, when, about which runs."""

    finding_id: str
    text: str
    time: float
    runs: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    source: str = "user"  # "user" or "diagnose"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.finding_id,
            "text": self.text,
            "time": self.time,
            "runs": self.runs,
            "tags": self.tags,
            "source": self.source,
        }


def _checked(text: str, tags: list[str]) -> tuple[str, list[str]]:
    """The text (stripped) and tags of a finding, refused in one line when unusable."""
    text = text.strip()
    if not text:
        raise UsageError("a finding needs some text")
    if len(text) > MAX_FINDING_CHARS:
        raise UsageError(f"a finding holds at most {MAX_FINDING_CHARS} characters (got {len(text)})")
    bad = [t for t in tags if "," in t or not t.strip()]
    if bad:
        raise UsageError(f"tag {bad[0]!r}: tags must be non-empty and contain no comma")
    return text, [t.strip() for t in tags]


def _record(store: Store, text: str, run_ids: list[str], tags: list[str], source: str) -> str:
    """Write a finding about ``run_ids`` (full ids) as a finished run; return its id."""
    text, tags = _checked(text, tags)
    finding_id = store.create_run(
        text.splitlines()[0][:60],  # the run name the MLflow UI shows
        tags={
            "questlab.finding.text": text,
            "questlab.finding.runs": ",".join(run_ids),
            "questlab.finding.tags": ",".join(tags),
            "questlab.finding.source": source,
        },
        experiment=FINDINGS_EXPERIMENT,
    )
    store.finish(finding_id)
    return finding_id


def _all(store: Store, run_id: str | None = None) -> list[Finding]:
    """The whole log, newest first; with ``run_id`` (a full id) only those citing it."""
    found = []
    for r in store.list_runs(FINDINGS_EXPERIMENT):
        runs = [x for x in r.tags.get("questlab.finding.runs", "").split(",") if x]
        if run_id is not None and run_id not in runs:
            continue
        found.append(
            Finding(
                finding_id=r.run_id,
                text=r.tags.get("questlab.finding.text", ""),
                time=r.start_time,
                runs=runs,
                tags=[x for x in r.tags.get("questlab.finding.tags", "").split(",") if x],
                source=r.tags.get("questlab.finding.source", "user"),
            )
        )
    return found


def add_finding(store: Store, text: str, runs: list[str], tags: list[str] | None = None) -> Finding:
    """Record a finding about ``runs`` (ids or unique prefixes; at least one); returns it."""
    if not runs:
        raise UsageError("name the run(s) the finding is about with --run RUN_ID")
    run_ids = [store.resolve_id(r) for r in runs]
    finding_id = _record(store, text, run_ids, tags or [], "user")
    return next(f for f in _all(store) if f.finding_id == finding_id)


def list_findings(store: Store, run: str | None = None, tag: str | None = None) -> list[Finding]:
    """The log, newest first; only those about ``run`` (id or prefix, deleted runs too) or with ``tag``."""
    found = _all(store)
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


def get_finding(store: Store, finding_id: str) -> Finding:
    """The finding with this id or unique id prefix (removed ones are gone)."""
    found = [f for f in _all(store) if f.finding_id.startswith(finding_id)] if finding_id else []
    exact = [f for f in found if f.finding_id == finding_id]
    if exact or len(found) == 1:
        return (exact or found)[0]
    if not found:
        raise RunNotFoundError(f"no finding {finding_id!r} in store {store.uri} (list them with: questlab findings)")
    raise RunNotFoundError(f"finding id prefix {finding_id!r} matches {len(found)} findings; give more characters")


def edit_finding(
    store: Store,
    finding_id: str,
    text: str | None = None,
    runs: list[str] | None = None,
    tags: list[str] | None = None,
) -> Finding:
    """Change a finding's text, cited runs (ids or unique prefixes) and/or tags; ``None`` keeps one.

    Its id, time and source stay; returns the finding as it now reads.
    """
    old = get_finding(store, finding_id)
    if runs is not None and not runs:
        raise UsageError("a finding is about at least one run: give its run id(s)")
    new_text, new_tags = _checked(old.text if text is None else text, old.tags if tags is None else tags)
    run_ids = old.runs if runs is None else [store.resolve_id(r) for r in runs]
    store.set_tags(
        old.finding_id,
        {
            "mlflow.runName": new_text.splitlines()[0][:60],
            "questlab.finding.text": new_text,
            "questlab.finding.runs": ",".join(run_ids),
            "questlab.finding.tags": ",".join(new_tags),
        },
    )
    return get_finding(store, old.finding_id)


def remove_finding(store: Store, finding_id: str) -> Finding:
    """Remove a finding from the log (the runs it cites are untouched); returns what it held."""
    found = get_finding(store, finding_id)
    store.delete_run(found.finding_id)
    return found


def record_verdicts(store: Store, run_id: str, verdicts: list[Verdict]) -> list[str]:
    """Offer errors and warnings as findings tagged ``diagnose``; skip those already recorded verbatim."""
    run_id = store.resolve_id(run_id)
    known = {f.text for f in _all(store, run_id)}
    added = []
    for v in verdicts:
        if v.severity not in ("error", "warning"):
            continue
        text = f"[{v.severity}] {v.code}: {v.message}"
        if text in known:
            continue
        added.append(_record(store, text, [run_id], ["diagnose", v.severity, v.code], "diagnose"))
        known.add(text)
    return added
