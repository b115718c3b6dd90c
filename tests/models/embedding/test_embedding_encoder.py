"""The encoder wrapper on a tiny random BERT: pooling read from the folder, windows, padding, ST parity."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.tiny_encoder import build_tiny_encoder, tiny_encoder  # noqa: F401  (fixtures)
from questlab.errors import ConfigError
from questlab.models.embedding.encoder import EncoderSettings, SentenceEncoder, read_pooling

TEXTS = [
    "How do I change the core file size?",
    "Short.",
    "A much longer answer that goes on for a while, with code like x = f(y); and a link http://example.com.",
    "Why?",
]


def test_pooling_and_normalisation_come_from_the_folder(tiny_encoder, tmp_path):  # noqa: F811
    assert read_pooling(tiny_encoder) == ("mean", True, 64)
    cls_folder = build_tiny_encoder(tmp_path / "cls", pooling="cls", normalize=False)
    assert read_pooling(cls_folder)[:2] == ("cls", False)


def test_head_tail_keeps_the_start_and_the_end(tiny_encoder):  # noqa: F811
    enc = SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=12, head_share=0.5))
    ids = list(range(100, 130))  # 30 tokens into a budget of 12 - 2 special = 10
    (window,) = enc._windows(ids)
    assert window == ids[:5] + ids[-5:]
    assert enc._windows(ids[:10]) == [ids[:10]]  # fits: untouched


def test_chunks_cover_every_token_in_equal_windows(tiny_encoder):  # noqa: F811
    enc = SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=12, long_text="chunks"))
    ids = list(range(23))
    windows = enc._windows(ids)
    assert [t for w in windows for t in w] == ids
    assert max(map(len, windows)) <= 10 and max(map(len, windows)) - min(map(len, windows)) <= 1


@pytest.mark.parametrize("long_text", ["head_tail", "chunks"])
def test_batching_and_padding_do_not_change_vectors(tiny_encoder, long_text):  # noqa: F811
    # fp32 so the comparison is exact to float noise; batch 3 mixes lengths within a batch.
    settings = EncoderSettings(max_tokens=16, long_text=long_text, bf16=False)
    batched = SentenceEncoder(str(tiny_encoder), settings, batch_size=3).encode(TEXTS, progress=False)
    single = SentenceEncoder(str(tiny_encoder), settings, batch_size=1)
    alone = np.vstack([single.encode([t], progress=False).vectors for t in TEXTS])
    np.testing.assert_allclose(batched.vectors, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched.vectors, axis=1), 1.0, atol=1e-5)
    assert batched.vectors.shape == (len(TEXTS), 32) and batched.vectors.dtype == np.float32
    assert (batched.kept <= batched.n_tokens).all()
    assert (batched.kept < batched.n_tokens).any() == (long_text == "head_tail")


def test_token_counts_are_remembered_per_text_and_match_encode(tiny_encoder):  # noqa: F811
    enc = SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=12))
    texts = [TEXTS[2], TEXTS[0], TEXTS[2], TEXTS[1]]  # a repeat, out of order
    encoded = enc.encode(texts, progress=False)
    n, kept = enc.token_counts(texts)
    np.testing.assert_array_equal(n, encoded.n_tokens)
    np.testing.assert_array_equal(kept, encoded.kept)
    enc.tokenizer = None  # a second call on the same texts must not tokenise again
    n2, _ = enc.token_counts(texts[::-1])
    np.testing.assert_array_equal(n2, n[::-1])


def test_matches_sentence_transformers_on_texts_that_fit(tiny_encoder):  # noqa: F811
    from sentence_transformers import SentenceTransformer

    ours = SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=64, bf16=False)).encode(TEXTS, progress=False)
    theirs = SentenceTransformer(str(tiny_encoder), device="cpu").encode(TEXTS, batch_size=2)
    np.testing.assert_allclose(ours.vectors, theirs, atol=1e-5)


def test_a_budget_beyond_the_model_is_refused(tiny_encoder):  # noqa: F811
    with pytest.raises(ValueError, match="exceeds"):
        SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=256))


def test_threads_leave_out_this_processes_own_load(monkeypatch):
    import questlab.models.embedding.encoder as encoder

    monkeypatch.setattr(encoder.os, "cpu_count", lambda: 2)
    assert encoder.pick_threads(3) == 3  # asked for: taken as is
    assert encoder.pick_threads(load=2.0, own=0.0) == 1  # two other busy threads: keep out of their way
    assert encoder.pick_threads(load=2.0, own=2.0) == 2  # the load is this run's own embedding: keep both
    assert encoder.pick_threads(load=0.1, own=1.5) == 2  # own share above the (lagging) load: nothing else runs
    assert encoder.pick_threads(load=9.0, own=1.0) == 1  # never fewer than one


def test_threads_stay_inside_omp_num_threads(monkeypatch):
    """A parallel fold worker is started with OMP_NUM_THREADS = cores // workers: an idle machine
    must not make each worker take every core."""
    import questlab.models.embedding.encoder as encoder

    monkeypatch.setattr(encoder.os, "cpu_count", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert encoder.pick_threads(load=0.0, own=0.0) == 1
    assert encoder.pick_threads(2) == 2  # asked for: taken as is
    monkeypatch.setenv("OMP_NUM_THREADS", "8")  # more than the cores: the cores still cap it
    assert encoder.pick_threads(load=0.0, own=0.0) == 2


def test_own_load_measures_this_processes_cpu(monkeypatch):
    import questlab.models.embedding.encoder as encoder

    clock = {"wall": 100.0, "cpu": 50.0}
    monkeypatch.setattr(encoder.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(encoder, "_cpu_seconds", lambda: clock["cpu"])
    monkeypatch.setattr(encoder, "_CPU_SAMPLES", [(100.0, 50.0)])
    clock.update(wall=110.0, cpu=70.0)  # 10 s, 20 CPU-seconds: two busy threads
    assert encoder.own_load() == pytest.approx(2.0)
    clock.update(wall=200.0, cpu=75.0)  # 90 s later, 5 CPU-seconds: the samples older than 60 s age out
    assert encoder.own_load() == pytest.approx(5.0 / 90.0)
    clock.update(wall=200.5, cpu=75.2)  # under a second since the last sample: too short to say
    assert encoder.own_load() == pytest.approx(0.0)


def test_own_load_counts_the_finished_fold_workers(monkeypatch):
    """A member fitted with parallel folds spends its CPU in child processes: the next member's
    embedding must see that load as its own, not as another job's (else it takes one thread)."""
    import os

    import questlab.models.embedding.encoder as encoder

    times = os.times_result((1.0, 2.0, 30.0, 4.0, 0.0))  # user, system, children's user and system
    monkeypatch.setattr(encoder.os, "times", lambda: times)
    assert encoder._cpu_seconds() == pytest.approx(37.0)


def _texts_of_many_lengths() -> list[str]:
    words = ["why", "does", "the", "kernel", "pick", "another", "block", "size", "when", "the", "batch"] * 4
    # 1 to 44 words, and one-word texts of one token each: few rows, where MKL sums in another order
    return [" ".join(words[: 1 + (5 * i) % len(words)]) for i in range(24)] + ["how", "what", "when"]


@pytest.mark.parametrize("long_text", ["head_tail", "chunks"])
@pytest.mark.parametrize("bf16", [True, False])
def test_a_texts_vector_does_not_depend_on_the_other_texts_in_its_batch(tiny_encoder, long_text, bf16):  # noqa: F811
    """Bit for bit: a bundle with an empty cache embeds the test texts in other batches than the
    run did, and its predictions must equal the run's (docs/export.md: to 1e-6). bf16 is what runs use
    (active only on CPUs with native bf16); fp32 shows padding alone already moves the last bits."""
    settings = EncoderSettings(max_tokens=24, long_text=long_text, bf16=bf16)
    texts = _texts_of_many_lengths()
    enc = SentenceEncoder(str(tiny_encoder), settings, batch_size=1, threads=1)  # 1 thread: fast under load
    alone = np.vstack([enc.encode([t], progress=False).vectors for t in texts])
    for enc.batch_size in (5, 32):  # neighbours of other lengths; then every text in one call
        np.testing.assert_array_equal(enc.encode(texts, progress=False).vectors, alone)
        mixed = enc.encode([*texts[::-1], "another text, of another length, in the batch"], progress=False)
        np.testing.assert_array_equal(mixed.vectors[: len(texts)][::-1], alone)


def test_layer_mean_pools_every_hidden_layer_and_has_its_own_cache_key(tiny_encoder):  # noqa: F811
    import torch

    settings = EncoderSettings(max_tokens=64, bf16=False, layers="mean")
    enc = SentenceEncoder(str(tiny_encoder), settings)
    got = enc.encode(TEXTS[:2], progress=False).vectors
    plain = SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=64, bf16=False))
    last = plain.encode(TEXTS[:2], progress=False)
    assert got.shape == last.vectors.shape and not np.allclose(got, last.vectors)
    # by hand: each layer's mean over the tokens, averaged over the layers, then L2-normalised
    ids = enc.tokenizer(TEXTS[:2][0], return_tensors="pt")
    with torch.inference_mode():
        states = enc.model(**ids, output_hidden_states=True).hidden_states[1:]
    expect = torch.stack([h[0].mean(0) for h in states]).mean(0).numpy()
    np.testing.assert_allclose(got[0], expect / np.linalg.norm(expect), atol=1e-5)
    assert "layers-mean" in enc.cache_namespace and "layers" not in plain.cache_namespace


def test_depth_runs_only_the_first_layers_and_has_its_own_cache_key(tiny_encoder):  # noqa: F811
    import torch

    full = SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=64, bf16=False, layers="mean"))
    n_layers = full.model.config.num_hidden_layers
    assert n_layers >= 2
    cut = SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=64, bf16=False, layers="mean", depth=1))
    got = cut.encode(TEXTS[:1], progress=False).vectors[0]
    assert cut.model.config.num_hidden_layers == 1
    # by hand on the full model: the first layer's mean over the tokens, L2-normalised
    ids = full.tokenizer(TEXTS[0], return_tensors="pt")
    with torch.inference_mode():
        first = full.model(**ids, output_hidden_states=True).hidden_states[1][0].mean(0).numpy()
    np.testing.assert_allclose(got, first / np.linalg.norm(first), atol=1e-5)
    assert "depth1" in cut.cache_namespace and "depth" not in full.cache_namespace
    with pytest.raises(ConfigError, match=f"depth={n_layers + 1}: .* has {n_layers} layers"):
        SentenceEncoder(str(tiny_encoder), EncoderSettings(max_tokens=64, depth=n_layers + 1))
