"""CLI commands of the analysis: ``diagnose``, ``compare``, ``report``, ``finding add``, ``findings``.

``questlab.cli`` calls ``register(app)``; user errors are one line and exit 2 (``common.guard``).
"""

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from questlab.cli.common import OneLineErrors, StoreOpt, examples, guard, open_store

if TYPE_CHECKING:
    from questlab.analysis.diagnose import Diagnosis
    from questlab.store import Store

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan", "ok": "green"}
N_BOOT_HELP = "group resamples for the per-target intervals (QUEST: questions)"
TRAIN_HELP = (
    "the run's train CSV: adds scores per value of the task's feature columns (QUEST: categories, weakest hosts)"
)


def _stdout_console():
    from rich.console import Console

    return Console(width=160, soft_wrap=True)


def _analysed(store: str | None, run_id: str, n_boot: int) -> tuple["Store", "Diagnosis"]:
    """The store and a run's diagnosis (verdicts, intervals from ``n_boot`` group resamples)."""
    from questlab.analysis.run_report import analysed

    st = open_store(store, create=False)
    return st, analysed(st, run_id, n_boot)


@guard
def diagnose(
    run_id: Annotated[str, typer.Argument(help="a recorded run (id or unique prefix)")],
    json_: Annotated[bool, typer.Option("--json", help="print the verdicts as JSON")] = False,
    record: Annotated[bool, typer.Option("--record", help="add errors and warnings to the findings log")] = False,
    report: Annotated[bool, typer.Option("--report/--no-report", help="write report.html into the run")] = True,
    n_boot: Annotated[int, typer.Option("--n-boot", help=N_BOOT_HELP)] = 200,
    train: Annotated[Path | None, typer.Option("--train", help=TRAIN_HELP)] = None,
    store: StoreOpt = None,
) -> None:
    """Verdicts on a run (constant predictions, weak folds, fitting, imbalance, truncation, health)."""
    from questlab.analysis.diagnose import by_severity
    from questlab.analysis.findings import record_verdicts
    from questlab.analysis.run_report import save_report

    st, diag = _analysed(store, run_id, n_boot)
    run_id = diag.run.record.run_id
    added = record_verdicts(st, run_id, diag.verdicts) if record else []
    path = save_report(st, diag, train) if report else None
    verdicts = by_severity(diag.verdicts)
    if json_:
        out = {"run_id": run_id, "verdicts": [v.to_dict() for v in verdicts], "report": str(path) if path else None}
        typer.echo(json.dumps(out, indent=1))
    else:
        from rich.markup import escape

        console = _stdout_console()
        console.print(f"[bold]run {run_id}[/bold] ({diag.run.record.name}, {diag.run.record.status})")
        for v in verdicts:
            style = SEVERITY_STYLE[v.severity]
            console.print(f"[{style}]{v.severity.upper():7}[/{style}] {v.code}: {escape(v.message)}")
    if added:
        typer.echo(f"recorded {len(added)} verdict(s) as findings", err=True)
    if path:
        typer.echo(f"report: {path}", err=True)


@guard
def compare(
    run_a: Annotated[str, typer.Argument(help="baseline run A")],
    run_b: Annotated[str, typer.Argument(help="run B, compared against A (deltas are B - A)")],
    n_boot: Annotated[int, typer.Option("--n-boot", help="paired group resamples (QUEST: questions)")] = 1000,
    json_: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="report path (default: compare-A.html in run B)")] = None,
    store: StoreOpt = None,
) -> None:
    """Side by side: which targets and folds got better or worse, with paired bootstrap intervals."""
    from rich.table import Table

    from questlab.analysis import report as rep
    from questlab.analysis.compare import A_BETTER, B_BETTER, compare_runs
    from questlab.analysis.findings import list_findings

    st = open_store(store, create=False)
    cmp = compare_runs(st, run_a, run_b, n_boot=n_boot)
    findings = [f for f in list_findings(st) if {cmp.a.run_id, cmp.b.run_id} & set(f.runs)]
    page = rep.compare_report(cmp, findings)
    path = rep.write(page, out) if out else st.attach(cmp.b.run_id, page, f"compare-{cmp.a.run_id[:8]}.html")
    if json_:
        typer.echo(json.dumps({**cmp.to_dict(), "report": str(path)}, indent=1))
        return
    style = {B_BETTER: "green", A_BETTER: "red"}

    def row(label: str, r: dict) -> list[str]:
        s = style.get(r["verdict"], "default")
        return [
            label,
            f"{r['a']:.4f}",
            f"{r['b']:.4f}",
            f"[{s}]{r['delta']:+.4f}[/{s}]",
            f"[{r['low']:+.4f}, {r['high']:+.4f}]",
            f"[{s}]{r['verdict']}[/{s}]",
        ]

    console = _stdout_console()
    console.print(f"A = {cmp.a.run_id} ({cmp.a.name}), B = {cmp.b.run_id} ({cmp.b.name}); {cmp.n_rows} shared rows")
    from rich.markup import escape

    for line in cmp.differences:  # what differs, before any score
        console.print(f"[yellow]{escape(line)}[/yellow]" if line.startswith("warning") else escape(line))
    head = ("", "A", "B", "B - A", "95% CI (paired)", "verdict")
    overall = Table(*head, title="overall")
    from questlab.metrics import get_metric
    from questlab.recording import direction_note, score_label

    metric = get_metric(cmp.metric)
    overall.add_row(*row(score_label(metric) + direction_note(metric), cmp.overall))
    console.print(overall)
    targets = Table(*head, title="per target (sorted by delta)")
    for t, r in cmp.per_target.sort_values("delta").iterrows():
        targets.add_row(*row(str(t), r.to_dict()))
    console.print(targets)
    if cmp.per_fold is not None:
        folds = Table(*head, title="per fold")
        for k, r in cmp.per_fold.iterrows():
            folds.add_row(*row(f"fold {k}", r.to_dict()))
        console.print(folds)
    for note in cmp.notes:
        console.print(f"note: {note}")
    diff = Table("config key", "A", "B", title="config differences")
    for k, a, b in cmp.config_diff:
        diff.add_row(k, str(a), str(b))
    console.print(diff if cmp.config_diff else "configs: identical")
    typer.echo(f"report: {path}", err=True)


@guard
def report(
    run_id: Annotated[str, typer.Argument(help="a recorded run (id or unique prefix)")],
    n_boot: Annotated[int, typer.Option("--n-boot", help=N_BOOT_HELP)] = 200,
    train: Annotated[Path | None, typer.Option("--train", help=TRAIN_HELP)] = None,
    store: StoreOpt = None,
    open_: Annotated[bool, typer.Option("--open", help="open the report in a web browser")] = False,
) -> None:
    """Write the run's report.html (what `diagnose` writes) and print its path on stdout."""
    from questlab.analysis.run_report import save_report

    st, diag = _analysed(store, run_id, n_boot)
    path = save_report(st, diag, train)
    typer.echo(str(path))
    if open_:
        import webbrowser

        if not webbrowser.open(Path(path).resolve().as_uri()):
            typer.echo(f"no web browser here: open {path} yourself", err=True)


@guard
def finding_add(
    text: Annotated[str, typer.Argument(help="what was found")],
    run: Annotated[list[str], typer.Option("--run", help="a run it is about (repeatable; at least one)")] = [],  # noqa: B006
    tag: Annotated[list[str], typer.Option("--tag", help="a tag (repeatable)")] = [],  # noqa: B006
    store: StoreOpt = None,
) -> None:
    """Add a finding about one or more runs; prints its id."""
    from questlab.analysis.findings import add_finding

    typer.echo(add_finding(open_store(store), text, run, tag).finding_id)


@guard
def findings(
    run: Annotated[str | None, typer.Option("--run", help="only findings about this run")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="only findings with this tag")] = None,
    json_: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
    store: StoreOpt = None,
) -> None:
    """The findings log, newest first."""
    from rich.table import Table

    from questlab.analysis.findings import list_findings

    found = list_findings(open_store(store, create=False), run=run, tag=tag)
    if json_:
        typer.echo(json.dumps([f.to_dict() for f in found], indent=1))
        return
    table = Table("when", "finding", "runs", "tags", "id", title=f"findings ({len(found)})")
    for f in found:
        table.add_row(
            dt.datetime.fromtimestamp(f.time).strftime("%Y-%m-%d %H:%M"),
            f.text,
            ", ".join(r[:8] for r in f.runs),
            ", ".join(f.tags),
            f.finding_id[:8],
        )
    _stdout_console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``diagnose``, ``compare``, ``report``, ``findings`` and the ``finding`` group (``finding add``)."""
    app.command(
        "diagnose",
        epilog=examples(
            "questlab diagnose RUN_ID",
            "questlab diagnose RUN_ID --record --train train.csv",
            "questlab diagnose RUN_ID --json --no-report",
        ),
    )(diagnose)
    app.command(
        "compare",
        epilog=examples(
            "questlab compare RUN_A RUN_B", "questlab compare RUN_A RUN_B --n-boot 2000 --json --out compare.html"
        ),
    )(compare)
    app.command("report", epilog=examples("questlab report RUN_ID", "questlab report RUN_ID --open"))(report)
    app.command(
        "findings", epilog=examples("questlab findings", "questlab findings --run RUN_ID --tag ensemble --json")
    )(findings)
    add_example = 'questlab finding add "stacking helps the answer_* targets" --run RUN_A --run RUN_B --tag ensemble'
    finding_app = typer.Typer(
        cls=OneLineErrors,
        no_args_is_help=True,
        help="The findings log (a lab notebook kept with the runs).",
        epilog=examples(add_example),
    )
    finding_app.command("add", epilog=examples(add_example, "questlab finding add TEXT --run RUN_ID"))(finding_add)
    app.add_typer(finding_app, name="finding")
