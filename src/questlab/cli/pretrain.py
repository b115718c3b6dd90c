"""``questlab pretrain``: masked-language-model training of an encoder on a task's own unlabelled texts."""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import examples, fail, guard


@guard
def pretrain(
    output: Annotated[Path, typer.Option("--output", help="new (or empty) folder for the adapted encoder")],
    train: Annotated[
        Path | None, typer.Option(help="train CSV: its texts (labels unread); this or --test or both")
    ] = None,
    test: Annotated[Path | None, typer.Option(help="test CSV: its texts; this or --train or both")] = None,
    task: Annotated[str | None, typer.Option(help="a built-in task (quest, ell) or a spec file; default quest")] = None,
    encoder: Annotated[str, typer.Option(help="a known encoder name or a local HF model folder")] = "all-MiniLM-L6-v2",
    epochs: Annotated[int, typer.Option(min=1, help="passes over the texts")] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1, help="stop after this many steps")] = None,
    max_length: Annotated[int, typer.Option(min=8, help="tokens per text")] = 256,
    mlm_probability: Annotated[float, typer.Option(help="share of tokens masked")] = 0.15,
    lr: Annotated[float, typer.Option(help="AdamW learning rate")] = 5e-5,
    batch_size: Annotated[int, typer.Option(min=1, help="texts per step")] = 16,
    seed: Annotated[int, typer.Option(help="seed of masking, order and the fresh MLM head")] = 42,
    cpu: Annotated[bool, typer.Option("--cpu", help="stay on CPU even with a GPU")] = False,
) -> None:
    """Continue MLM training of an encoder on the task's texts; print the folder any config can use."""
    import logging

    from pydantic import ValidationError

    from questlab.pretrain import PretrainConfig
    from questlab.pretrain import pretrain as run_pretrain

    texts = [p for p in (train, test) if p is not None]
    if not texts:
        fail("give --train and/or --test: the CSVs whose texts the encoder is trained on")
    try:
        cfg = PretrainConfig(
            encoder=encoder, texts=texts, task=task, output=output, epochs=epochs, max_steps=max_steps,
            max_length=max_length, mlm_probability=mlm_probability, lr=lr, batch_size=batch_size, seed=seed, cpu=cpu,
        )  # fmt: skip
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run_pretrain(cfg)
    first, last = (result.losses[0], result.losses[-1]) if result.losses else (float("nan"), float("nan"))
    typer.echo(
        f"{result.n_texts} texts, {result.steps} steps in {result.seconds:.0f} s; MLM loss {first:.3f} -> {last:.3f}",
        err=True,
    )
    typer.echo(str(output))


def register(app: typer.Typer) -> None:
    """Add ``pretrain`` to the questlab CLI."""
    app.command(
        "pretrain",
        epilog=examples(
            "questlab pretrain --train train.csv --test test.csv --output my-encoder/",
            "questlab pretrain --encoder all-MiniLM-L6-v2 --test test.csv --max-steps 500 --output my-encoder/",
        ),
    )(pretrain)
