"""Shipped configs: ``questlab run tfidf`` after a plain ``pip install``, with no repository checkout.

The repository's ``configs/*.yaml`` are the source (the README, docs and benchmarks name them by
path); the package ships byte-identical copies in ``questlab/configs/``, found by name.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import questlab as ql
from helpers.paths import REPO
from helpers.runs import train_slice
from questlab.cli import app
from questlab.config import ConfigError, load_config, shipped_config_names

SHIPPED = REPO / "src" / "questlab" / "configs"


def test_the_shipped_configs_are_the_repository_configs_byte_for_byte() -> None:
    source = {p.name: p.read_bytes() for p in (REPO / "configs").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in SHIPPED.glob("*.yaml")}
    assert sorted(shipped) == sorted(source), "src/questlab/configs/ must hold exactly the files of configs/*.yaml"
    stale = [name for name in source if shipped[name] != source[name]]
    assert not stale, f"edit configs/ and copy: cp configs/{{{','.join(stale)}}} src/questlab/configs/"
    assert shipped_config_names() == tuple(sorted(n.removesuffix(".yaml") for n in source))


def test_the_wheel_carries_them() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert data["tool"]["setuptools"]["package-data"]["questlab.configs"] == ["*.yaml"]
    assert (SHIPPED / "__init__.py").is_file()  # a package, found by importlib.resources


@pytest.mark.parametrize("name", ["tfidf", "mean", "embedding", "transformer-cpu", "transformer-gpu"])
def test_each_shipped_config_loads_by_name_as_its_file(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert load_config(name) == load_config(REPO / "configs" / f"{name}.yaml")


def test_a_path_wins_over_a_shipped_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("tfidf").write_text("name: mine\nmodel: {name: mean}\n")
    assert load_config("tfidf").name == "mine"
    assert load_config(REPO / "configs" / "tfidf.yaml").model.name == "tfidf"  # the README's path still works


def test_an_unknown_name_lists_the_shipped_ones(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'tfidf'") as info:
        load_config("tfidff")
    assert all(n in str(info.value) for n in shipped_config_names())
    result = CliRunner().invoke(app, ["run", "configs/tfidf.yaml", "--train", "train.csv"])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "no such config file (did you mean 'tfidf'?)" in lines[0] and "transformer-cpu" in lines[0]


def test_run_help_names_the_shipped_configs() -> None:
    text = " ".join(CliRunner().invoke(app, ["run", "--help"], terminal_width=200).stdout.split())
    assert "see configs/" not in text
    assert all(n in text for n in shipped_config_names())


def test_run_by_name_from_a_folder_without_configs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not Path("configs").exists()
    sets = ["folds.n_splits=3", "bootstrap=10", "parallel_folds=1", "model.params.max_features=2000"]
    argv = ["run", "tfidf", "--train", str(train_slice()), "--store", "store"]
    result = CliRunner().invoke(app, [*argv, *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    run = ql.load_run(result.stdout.split()[-1], store="store")
    assert run.status == "FINISHED" and run.config["name"] == "tfidf" and run.config["model"]["name"] == "tfidf"
    # and from code, the same name
    again = ql.run("mean", train=train_slice(), set={"folds.n_splits": 3, "bootstrap": 0}, store="store", quiet=True)
    assert again.model == "mean"
