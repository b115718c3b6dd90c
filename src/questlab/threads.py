"""The thread counts a fold is fitted with: the same in this process and in a fold worker.

A fold's numbers must not depend on ``parallel_folds``: ``questlab run`` with two fold workers
records exactly what the serial run records (tests/test_run_modes.py). A worker is started with
``OPENBLAS_NUM_THREADS`` = cores // workers, while this process's BLAS takes every core, and
OpenBLAS sums in another order with another thread count: on a 2-core machine whose OpenBLAS
picks the Haswell kernel (``OPENBLAS_CORETYPE=Haswell`` forces it), a serial TF-IDF run and a
parallel one differed in the last digit of their predictions (1.9e-6 on a full fold here, with
the SkylakeX kernel too).

So a fold is fitted and predicted with **1 BLAS thread**, serially or in a worker (and in a DDP
worker). What the BLAS computes in questlab's fits is small: the ridge of the TF-IDF model and
of the embedding heads; a TF-IDF fold (40,000 features per part) fitted and predicted in 1.2 to
2.3 s with 1 thread and 3.2 to 3.5 s with 2 on a shared 2-core machine. One thread also gives the
same numbers on machines with other core counts. Parallel folds are how these models use the cores.

torch's threads are left to the model: the transformer takes every core serially (its
``num_threads`` param, or torch's default), the embedding model picks them from the load
(``threads``). torch's GEMMs split rows, not the summed dimension, across threads: MiniLM vectors
and embedding MLP heads came out identical with 1 and 2 threads. The exception is MKL's path for
matrices of a few rows, which the encoder never takes (``MIN_ROWS`` in
:mod:`questlab.models.embedding.encoder`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

FOLD_BLAS_THREADS = 1


@contextmanager
def fold_threads() -> Iterator[None]:
    """Fit (and predict) a fold inside this block: BLAS at ``FOLD_BLAS_THREADS``, torch as the model sets it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=FOLD_BLAS_THREADS, user_api="blas"):
        yield
