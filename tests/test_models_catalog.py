"""``questlab models`` and ``ql.model_params()``: every family's parameters, generated from the typed params."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import questlab as ql
from questlab.cli import app
from questlab.models import get_model_class, model_names
from questlab.models.catalog import default_text, meaning, parameters, type_text
from questlab.models.tfidf import TfidfParams


def test_every_parameter_of_every_family_has_a_type_default_and_meaning() -> None:
    frame = ql.model_params()
    assert list(frame.columns) == ["family", "parameter", "type", "default", "meaning"]
    for family in model_names():
        params = get_model_class(family).Params
        rows = frame[frame["family"] == family]
        assert list(rows["parameter"]) == list(params.model_fields), family
    missing = frame[(frame["meaning"] == "") | (frame["type"] == "") | (frame["default"] == "")]
    assert missing.empty, f"give these fields a description=: {missing[['family', 'parameter']].values.tolist()}"


def test_the_rows_come_from_the_fields() -> None:
    fields = TfidfParams.model_fields
    assert type_text(fields["ngram_max"]) == "int in [1, 3]"
    assert type_text(fields["alpha"]) == "float | auto"  # a penalty, or one per target chosen in-fold
    assert default_text(fields["alpha"]) == "10" and default_text(fields["stats_weight"]) == "0.3"
    assert meaning(TfidfParams, "alpha") == fields["alpha"].description
    transformer = parameters("transformer").set_index("parameter")
    assert transformer.loc["mode", "type"] == "joint | dual"
    assert transformer.loc["lr", "meaning"] == "encoder LR (top layer)"  # a trailing comment
    assert transformer.loc["compile", "default"] == "false"
    embedding = parameters("embedding").set_index("parameter")
    assert embedding.loc["parts", "default"] == "[title, answer, title_body]"
    assert embedding.loc["parts", "type"] == "list of str"  # any text (or segment) of the task


def test_models_lists_every_family() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for family in model_names():
        assert f"│ {family} " in result.stdout


def test_models_tfidf_shows_every_field() -> None:
    result = CliRunner().invoke(app, ["models", "tfidf"])
    assert result.exit_code == 0, result.output
    for name, info in TfidfParams.model_fields.items():
        line = next(ln for ln in result.stdout.splitlines() if f"│ {name} " in ln)
        assert default_text(info) in line and info.description.split()[0] in line
    rows = json.loads(CliRunner().invoke(app, ["models", "tfidf", "--json"]).stdout)
    assert [r["parameter"] for r in rows] == list(TfidfParams.model_fields)


def test_an_unknown_family_is_one_line() -> None:
    result = CliRunner().invoke(app, ["models", "bert"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown model 'bert'; known models: "), result.output
    assert all(name in lines[0] for name in model_names())
    with pytest.raises(KeyError):
        ql.model_params("bert")
