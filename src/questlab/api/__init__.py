"""questlab from code: the functions a notebook, a script or an agent calls.

    import questlab as ql
    ql.check("train.csv")                       # validate and summarise data (task="ell" for another task)
    run = ql.run("configs/tfidf.yaml", train=train_df, test=test_df, set={"model.params.alpha": 3})
    run.cv, run.ci, run.fold_scores, run.per_target, run.oof
    run.predict(new_df); run.evaluate(labelled_df); run.diagnose(); run.report(); run.export("bundle/")
    ql.compare(run, other); ql.runs(sort="cv"); ql.load_run(run_id); ql.load_bundle("bundle/")
    ql.ensemble([run, other]); ql.postprocess(run); ql.pseudo_label(run, "test.csv", "pseudo.csv")
    ql.add_finding("alpha 3 helps", runs=[run]); ql.findings(); ql.edit_finding(id, "..."); ql.remove_finding(id)
    ql.run("tfidf", train=train_df)   # a config shipped with questlab, by name; ql.model_params(): every parameter

Inputs are validated exactly like files (a bad cell names its column and row); errors are
questlab's (:mod:`questlab.errors`), never an exit. Every function takes ``store=`` (a folder, an
MLflow tracking URI, or a :class:`~questlab.store.Store`); the default is ``$QUESTLAB_STORE``,
else ``./questlab-store``. The CLI calls the same library functions.
"""

from __future__ import annotations

from questlab.api.actions import check, ensemble, postprocess, pseudo_label, report
from questlab.api.core import compare, evaluate, leaderboard, load_bundle, load_run, model_params, recipe, run, runs
from questlab.api.findings_log import Finding, add_finding, edit_finding, findings, remove_finding
from questlab.api.objects import DataLike, Run, StoreLike, Verdicts

__all__ = [
    "DataLike",
    "Finding",
    "Run",
    "StoreLike",
    "Verdicts",
    "add_finding",
    "check",
    "compare",
    "edit_finding",
    "ensemble",
    "evaluate",
    "findings",
    "leaderboard",
    "load_bundle",
    "load_run",
    "model_params",
    "postprocess",
    "pseudo_label",
    "recipe",
    "remove_finding",
    "report",
    "run",
    "runs",
]
