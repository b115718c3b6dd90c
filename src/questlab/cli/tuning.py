"""CLI command for hyper-parameter search (``questlab tune``), a thin layer over :mod:`questlab.tuning`.

The summary goes to stderr; stdout gets two lines: the best config's path, then the study's
parent run id (last, as ``run`` prints its run id). A ``--join`` worker prints the parent run id.
"""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import StoreOpt, examples, fail, guard, open_store


def _check_storage(url: str, store: str | None) -> None:
    """Refuse an Optuna storage URL that cannot be opened, without opening it: it is checked before
    the store is created, so a mistyped ``--storage`` leaves nothing behind (Optuna opens it later).
    A URL that parses, names an installed driver and, for SQLite, a folder that exists passes; the
    MLflow store's own database is refused (Optuna would add its tables to it)."""
    from sqlalchemy.engine import make_url

    from questlab.errors import StudyError
    from questlab.tuning.storage import redact

    try:
        parsed = make_url(url)
        parsed.get_dialect().import_dbapi()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise StudyError(f"storage {redact(url)}: Optuna cannot open it ({type(exc).__name__}: {first})") from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        folder = Path(database).parent
        if not folder.is_dir():
            raise StudyError(f"storage {redact(url)}: Optuna cannot open it (no folder {folder} for the database)")
        from questlab.store.backend import resolve_store_uri

        store_uri = resolve_store_uri(store)
        if store_uri.startswith("sqlite:///") and Path(database).resolve() == Path(store_uri[10:]).resolve():
            raise StudyError(
                f"storage {redact(url)} is the MLflow store's own database: Optuna would add its tables to it; "
                "leave --storage out (the study then gets optuna.db beside the store) or name another file"
            )


def _best_config_path(given: Path | None, config: Path, study: str | None, set_: list[str] | None) -> Path:
    """Where the best config will be written: ``--best-config``, else ``STUDY-best.yaml`` here."""
    if given is not None:
        return given
    if study is None:
        from questlab.config import load_config

        study = load_config(config, overrides=set_).name
    return Path(f"{study}-best.yaml")


@guard
def tune(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="YAML run config to tune (see configs/), or a shipped one by name; required unless --join --study"
        ),
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option("--space", help="search space YAML (see configs/spaces/, docs/tune.md); required unless --join"),
    ] = None,
    train: Annotated[Path, typer.Option(help="labelled train CSV")] = ...,
    trials: Annotated[
        int | None,
        typer.Option(
            help="trials in total (complete, pruned, or failed because their settings cannot fit), "
            "across workers and resumes (default 40)"
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL (default: SQLite beside the store); a database URL shares the study"),
    ] = None,
    study: Annotated[str | None, typer.Option(help="study name (default: the config's name); the same resumes")] = None,
    workers: Annotated[int, typer.Option(help="processes on this machine, this one included")] = 1,
    holdout: Annotated[
        float,
        typer.Option(
            help="share of the groups (QUEST: questions; else rows) kept out of every trial, to score the chosen"
            " config (0: none)"
        ),
    ] = 0.2,
    seed: Annotated[int | None, typer.Option(help="seed of the split and the sampler (default: the config's)")] = None,
    prune: Annotated[bool, typer.Option("--prune/--no-prune", help="median pruning after each fold")] = True,
    best_config: Annotated[
        Path | None, typer.Option("--best-config", help="where to write the best config (default: STUDY-best.yaml)")
    ] = None,
    join: Annotated[
        bool,
        typer.Option("--join", help="run trials of a study started elsewhere (same --storage, --store, --study)"),
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a base config key, e.g. --set folds.n_splits=3 (repeatable)"),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="the task: a built-in name (quest, ell) or a task spec YAML (default: the config's, else quest)"
        ),
    ] = None,
    time_limit: Annotated[
        str | None,
        typer.Option(
            "--time-limit",
            help="wall-clock budget (90s, 15m, 1h30m; plain numbers are seconds): no trial starts unless it and "
            "the held-out run are expected to fit",
        ),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Search a config's hyper-parameters: each trial a recorded run, the best scored on untouched questions."""
    from questlab.csvfile import check_not_an_input
    from questlab.timebudget import parse_duration
    from questlab.tuning import join_study
    from questlab.tuning import tune as run_study

    if train is None:
        fail("give --train (the labelled CSV every trial is cut from)")
    budget = parse_duration(time_limit, "--time-limit")  # a typo is refused before any store is opened
    if budget is not None and (join or workers > 1):
        fail("--time-limit holds for one process: give it without --join and --workers")
    if storage is not None:
        _check_storage(storage, store)  # before any store is opened or created
    try:
        if join:
            if study is None and config is None:
                fail("--join needs --study NAME (or the CONFIG whose name is the study's)")
            if study is None:
                from questlab.config import load_config

                study = load_config(config, overrides=set_).name
            st = open_store(store)
            joined = join_study(
                study, train, store=st, storage=storage, config=config, space=space, set=set_, trials=trials
            )
            typer.echo(f"ran {joined.trials_run} trial(s) of study {joined.study_name}", err=True)
            typer.echo(joined.parent_run_id)
            return
        if config is None or space is None:
            fail("give a CONFIG and --space (a search space YAML)")
        check_not_an_input(
            "--best-config" if best_config is not None else "the best config (default --best-config)",
            _best_config_path(best_config, config, study, set_),
            {"--train": train, "CONFIG": config, "--space": space},
        )
        result = run_study(
            config,
            space,
            train,
            trials=40 if trials is None else trials,
            set=set_,
            store=store,  # opened once the arguments are checked: a typo creates no store
            storage=storage,
            study_name=study,
            holdout=holdout,
            seed=seed,
            workers=workers,
            prune=prune,
            best_config_path=best_config,
            task=task,
            time_limit=budget,
        )
    except KeyboardInterrupt:
        typer.echo("interrupted: re-run the same command to resume the study", err=True)
        raise typer.Exit(code=130) from None
    if result.report_path is not None:
        typer.echo(f"report: {result.report_path}", err=True)
    typer.echo(str(result.best_config_path))
    typer.echo(result.parent_run_id)


def register(app: typer.Typer) -> None:
    """Add ``tune`` to the questlab CLI."""
    app.command(
        "tune",
        epilog=examples(
            "questlab tune tfidf --space configs/spaces/tfidf.yaml --train train.csv --trials 40",
            "questlab tune tfidf --space configs/spaces/tfidf.yaml --train train.csv --set folds.n_splits=3",
            "questlab tune tfidf --space configs/spaces/tfidf.yaml --train train.csv --trials 200 --time-limit 1h",
            "questlab tune --join --study tfidf --train train.csv --storage postgresql://USER@HOST/optuna",
        ),
    )(tune)
