"""Quiet by default (issue 31 part 7): a non-terminal stderr gets plain lines, never bars.

Each check runs questlab in a subprocess whose stderr is a pipe (not a TTY), as in a log file
or CI: no escape codes, no ``\\r`` redraws, no transformers LOAD REPORT (kept under --verbose).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from helpers.runs import test_slice as _test_slice
from helpers.runs import train_slice
from helpers.tiny_encoder import tiny_encoder  # noqa: F401 (fixture)

SRC = Path(__file__).resolve().parents[1] / "src"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QUESTLAB_VERBOSE", "QUESTLAB_QUIET")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def assert_plain(stderr: str) -> None:
    assert "\x1b[" not in stderr, stderr
    assert "\r" not in stderr, stderr
    assert "LOAD REPORT" not in stderr, stderr
    assert "UNEXPECTED" not in stderr, stderr


def test_a_tfidf_run_writes_plain_lines_only(tmp_path: Path) -> None:
    config = tmp_path / "tfidf.yaml"
    config.write_text(
        yaml.safe_dump(
            {"name": "quiet", "folds": {"n_splits": 2, "seed": 1}, "model": {"name": "tfidf"}, "bootstrap": 20}
        )
    )
    cmd = [sys.executable, "-m", "questlab.cli", "run", str(config), "--train", str(train_slice())]
    cmd += ["--test", str(_test_slice()), "--store", str(tmp_path / "store")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_plain(done.stderr)
    assert "fold 0:" in done.stderr
    assert "\n\n" not in done.stderr and not done.stderr.startswith("\n")  # no line left by a hidden bar


_EMBED = textwrap.dedent(
    """
    import sys
    from questlab.models.embedding.encoder import EncoderSettings, SentenceEncoder
    from questlab.models.transformer.network import load_encoder

    folder = sys.argv[1]
    enc = SentenceEncoder(folder, EncoderSettings(max_tokens=64), batch_size=4)
    vectors = enc.encode(["what is a question?", "an answer"] * 20, progress=True, desc="embed test").vectors
    assert vectors.shape[0] == 40
    load_encoder(folder)  # no pooler asked for: transformers reports pooler.* as UNEXPECTED
    """
)


def test_embedding_and_encoder_loading_are_quiet(tiny_encoder: Path, tmp_path: Path) -> None:  # noqa: F811
    cmd = [sys.executable, "-c", _EMBED, str(tiny_encoder)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_plain(done.stderr)
    assert "embed test: 40 sequences in" in done.stderr  # the plain line of the stage
    verbose = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(QUESTLAB_VERBOSE="1"), cwd=tmp_path, timeout=300
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "LOAD REPORT" in verbose.stderr  # kept under --verbose / QUESTLAB_VERBOSE=1


def test_progress_is_enabled_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from questlab import console

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(console.ENV_QUIET, raising=False)
    assert not console.progress_enabled()  # pytest captures stderr: not a terminal
    monkeypatch.setattr(sys, "stderr", Tty())
    assert console.progress_enabled()
    monkeypatch.setenv(console.ENV_QUIET, "1")
    assert not console.progress_enabled()


def test_tune_prints_no_blank_lines_between_trials(tmp_path: Path) -> None:
    config, space = tmp_path / "c.yaml", tmp_path / "s.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tfidf-small",
                "folds": {"n_splits": 2, "seed": 1},
                "bootstrap": 20,
                "model": {"name": "tfidf", "params": {"max_features": 2000}},
            }
        )
    )
    space.write_text(yaml.safe_dump({"params": {"model.params.alpha": {"float": [0.3, 100], "log": True}}}))
    cmd = [sys.executable, "-m", "questlab.cli", "tune", str(config), "--space", str(space)]
    cmd += ["--train", str(train_slice()), "--trials", "3", "--best-config", str(tmp_path / "best.yaml")]
    cmd += ["--store", str(tmp_path / "store")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert_plain(done.stderr)
    lines = done.stderr.splitlines()
    assert sum(line.startswith("trial") for line in lines) >= 3, done.stderr
    assert all(line.strip() for line in lines), done.stderr  # one line per trial, none blank


def test_the_global_verbose_option_sets_verbose_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from questlab import console
    from questlab.cli import app

    monkeypatch.delenv(console.ENV_VERBOSE, raising=False)
    assert not console.verbose()
    CliRunner().invoke(app, ["--verbose", "findings", "--store", str(tmp_path / "no-store")])
    assert console.verbose()
    monkeypatch.delenv(console.ENV_VERBOSE)
