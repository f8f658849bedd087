"""One BLAS thread for numpy's matrix products on the search path.

OpenBLAS's threads keep spinning after a product and take the cores from the next
onnxruntime and ``bm25s`` work of the same search. On 2 cores, full STARD index: exact dense
search p50 15.0 → 8.3 ms with one thread (the product alone 1.7 ms on 2 threads, 2.8 ms on
one; issue 20); re-scoring 20 STARD candidates with the built-in's late-interaction reranker
p50 123 → 72 ms, p95 188 → 104 ms (AVX2-only cores, 60 dev questions; issue 19).
"""

from __future__ import annotations

import functools


@functools.cache
def _controller():
    """threadpoolctl's handle on the BLAS numpy loaded (looked up once)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread():
    """A context manager: numpy's BLAS on one thread inside it."""
    return _controller().limit(limits=1, user_api="blas")
