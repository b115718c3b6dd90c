"""Configs: typed, from YAML, unknown keys rejected with the accepted ones listed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers.paths import REPO
from questlab.config import ConfigError, load_config, parse_config, read_yaml
from questlab.models import get_model_class

ROOT = REPO


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    """Each shipped config resolves to exactly its YAML's values over the family's defaults."""
    raw = yaml.safe_load(path.read_text())
    config = load_config(path)
    assert config.name == raw["name"] and config.model.name == raw["model"]["name"]
    defaults = get_model_class(raw["model"]["name"]).Params().model_dump(mode="json")
    assert config.model.params == {**defaults, **(raw["model"].get("params") or {})}
    for key, value in (raw.get("folds") or {}).items():
        assert getattr(config.folds, key) == value, key
    for key in ("seed", "bootstrap", "parallel_folds"):
        if key in raw:
            assert getattr(config, key) == raw[key], key


def test_defaults_are_resolved() -> None:
    config = parse_config({"name": "t", "model": {"name": "tfidf"}})
    assert config.model.params == get_model_class("tfidf").Params().model_dump(mode="json")
    assert config.model.params["alpha"] > 0 and config.folds.n_splits == 5


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"name": "t", "model": {"name": "tfidf"}, "sed": 1}, "sed: unknown config key"),
        ({"name": "t", "model": {"name": "tfidf", "params": {"apha": 3}}}, "accepted keys"),
        ({"name": "t", "model": {"name": "bert"}}, "known models: "),
        ({"name": "t", "model": {"name": "tfidf", "params": {"alpha": -1}}}, "alpha"),
        ({"name": "t", "model": {"name": "mean"}, "folds": {"from_run": "a", "from_file": "b"}}, "not both"),
        ([1, 2], "mapping"),
    ],
)
def test_bad_configs(data: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(data)


def test_bad_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "missing.yaml")


def test_a_key_given_twice_is_refused_not_silently_the_last(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: a\nmodel:\n  name: tfidf\n  params: {alpha: 1.0, alpha: 30.0}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: not valid YAML at line 4, column 24: key 'alpha' is given twice (first at line 4): keep one"
    )
    # the same key in two mappings is fine, and so is a mapping's own key over a merged one (<<)
    path.write_text("a: &b {name: x, seed: 1}\nc:\n  <<: *b\n  seed: 3\nd: {name: y}\n")
    assert read_yaml(path) == {"a": {"name": "x", "seed": 1}, "c": {"name": "x", "seed": 3}, "d": {"name": "y"}}
