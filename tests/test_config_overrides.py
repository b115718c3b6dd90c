"""``--set key.path=value`` overrides: parsed as YAML, checked against the schema, recorded."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from helpers.paths import REPO
from questlab.config import ConfigError, apply_overrides, load_config, parse_config

ROOT = REPO
TFIDF = ROOT / "configs" / "tfidf.yaml"
MEAN = ROOT / "configs" / "mean.yaml"


def _raw() -> dict:
    return {"name": "t", "model": {"name": "tfidf", "params": {"alpha": 10.0}}}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("1.5", 1.5),
        ("1e-3", 1e-3),
        ("3e5", 3e5),
        ("-2.5E+2", -250.0),
        ("true", True),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ("{a: 1}", {"a": 1}),
        ("'3'", "3"),
        ('"1e-3"', "1e-3"),
        ("hello world", "hello world"),
        ("2024-01-01", "2024-01-01"),
    ],
)
def test_values_are_parsed_as_yaml(text: str, value: object) -> None:
    out = apply_overrides({"x": 0}, [f"description={text}"])
    assert out["description"] == value
    assert type(out["description"]) is type(value)


def test_nested_keys_and_missing_intermediates() -> None:
    out = apply_overrides({"name": "t", "model": {"name": "mean"}}, ["folds.n_splits=10", "folds.seed=7"])
    assert out["folds"] == {"n_splits": 10, "seed": 7}
    config = parse_config(out)
    assert config.folds.n_splits == 10 and config.folds.seed == 7


def test_model_params_on_shipped_config() -> None:
    config = load_config(TFIDF, ["model.params.alpha=3", "folds.n_splits=3", "bootstrap=0"])
    assert config.model.params["alpha"] == 3
    assert config.model.params["ngram_max"] == 2  # the file's other params are kept
    assert config.folds.n_splits == 3 and config.bootstrap == 0
    assert load_config(TFIDF).model.params["alpha"] == 10.0


def test_later_overrides_win() -> None:
    config = load_config(TFIDF, ["model.params.alpha=3", "model.params.alpha=1e-3"])
    assert config.model.params["alpha"] == pytest.approx(1e-3)


def test_input_is_not_mutated() -> None:
    data = _raw()
    before = copy.deepcopy(data)
    apply_overrides(data, ["model.params.alpha=3", "folds.n_splits=4"])
    parse_config(data, overrides=["model.params.alpha=3", "folds.n_splits=4"])
    assert data == before


@pytest.mark.parametrize(
    ("override", "bad", "close", "accepted"),
    [
        ("sed=1", "'sed'", "'seed'", "accepted keys at the top level: name, description, task, seed"),
        ("folds.n_split=10", "'folds.n_split'", "'folds.n_splits'", "accepted keys at folds: n_splits, seed"),
        (
            "model.params.apha=3",
            "'model.params.apha'",
            "'model.params.alpha'",
            "accepted keys at model.params of model 'tfidf': ngram_max, min_df",
        ),
    ],
)
def test_typo_lists_accepted_keys_and_suggests(override: str, bad: str, close: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(TFIDF, [override])
    msg = str(info.value)
    assert str(TFIDF) in msg and repr(override) in msg
    assert f"unknown key {bad}" in msg
    assert f"did you mean {close}" in msg  # "or ..." where two keys are close
    assert accepted in msg


def test_unknown_key_without_close_match() -> None:
    with pytest.raises(ConfigError, match="unknown key 'zzzzzz'; accepted keys") as info:
        apply_overrides(_raw(), ["zzzzzz=1"])
    assert "did you mean" not in str(info.value)


def test_overrides_record_is_not_settable() -> None:
    with pytest.raises(ConfigError, match="unknown key 'overrides'"):
        apply_overrides(_raw(), ["overrides=[a]"])


@pytest.mark.parametrize("override", ["folds.n_splits", "=3", "folds..seed=1", ".seed=1", "seed.=1"])
def test_malformed_override(override: str) -> None:
    with pytest.raises(ConfigError, match=r"expected the form key\.path=value") as info:
        apply_overrides(_raw(), [override])
    assert repr(override) in str(info.value)


def test_sub_keys_of_a_scalar_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"model\.params\.alpha takes a single value"):
        apply_overrides(_raw(), ["model.params.alpha.x=1"])
    with pytest.raises(ConfigError, match="seed takes a single value"):
        apply_overrides(_raw(), ["seed.x=1"])


def test_invalid_yaml_value() -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML.*quote it"):
        apply_overrides(_raw(), ["description=[unclosed"])


def test_type_error_names_key_and_override() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(TFIDF, ["model.params.alpha=abc"])
    msg = str(info.value)
    assert str(TFIDF) in msg and "alpha" in msg and "override 'model.params.alpha=abc'" in msg
    with pytest.raises(ConfigError, match=r"folds\.n_splits: .*override 'folds\.n_splits=1'"):
        load_config(TFIDF, ["folds.n_splits=1"])


def test_errors_without_overrides_are_unchanged() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"name": "t", "model": {"name": "tfidf", "params": {"alpha": "abc"}}})
    assert "override" not in str(info.value)


def test_switch_model_then_set_its_param() -> None:
    config = load_config(MEAN, ["model.name=tfidf", "model.params.alpha=3"])
    assert config.model.name == "tfidf" and config.model.params["alpha"] == 3
    # the family is checked as it stands after the earlier overrides
    with pytest.raises(ConfigError, match="of model 'mean'"):
        load_config(TFIDF, ["model.name=mean", "model.params.alpha=3"])
    with pytest.raises(ConfigError, match="unknown model 'bert'; known models"):
        load_config(TFIDF, ["model.name=bert", "model.params.alpha=3"])


def test_switching_family_keeps_file_params_with_hint() -> None:
    with pytest.raises(ConfigError, match=r"reset them with model\.params=\{\}"):
        load_config(TFIDF, ["model.name=mean"])
    assert load_config(TFIDF, ["model.name=mean", "model.params={}"]).model.params == {}


def test_params_need_a_model_name() -> None:
    with pytest.raises(ConfigError, match=r"set model\.name before model\.params"):
        apply_overrides({"name": "t"}, ["model.params.alpha=3"])


def test_overrides_are_recorded() -> None:
    given = ["model.params.alpha=3", "folds.n_splits=10"]
    config = load_config(TFIDF, given)
    assert config.overrides == given
    dumped = yaml.safe_load(config.to_yaml())
    assert dumped["overrides"] == given
    assert dumped["model"]["params"]["alpha"] == 3 and dumped["folds"]["n_splits"] == 10
    assert load_config(TFIDF).overrides == []


def test_round_trip_does_not_reapply() -> None:
    config = load_config(TFIDF, ["model.params.alpha=3"])
    again = parse_config(config.model_dump(mode="json"))
    assert again == config
    # a resolved config read back with new overrides appends to the record
    newer = parse_config(config.model_dump(mode="json"), overrides=["seed=7"])
    assert newer.overrides == ["model.params.alpha=3", "seed=7"]
    assert newer.model.params["alpha"] == 3 and newer.seed == 7


def test_round_trip_through_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "resolved.yaml"
    path.write_text(load_config(TFIDF, ["model.params.alpha=3"]).to_yaml())
    config = load_config(path)
    assert config.overrides == ["model.params.alpha=3"] and config.model.params["alpha"] == 3


def test_a_single_string_is_refused() -> None:
    with pytest.raises(TypeError, match="list"):
        apply_overrides(_raw(), "seed=1")  # type: ignore[arg-type]
