"""ColBERTv2's residual compression of unit vectors (Santhanam et al., 2022,
arXiv:2112.01488), as an index stores its passage states
(:mod:`~lexedge.runtime.passage_states`): each vector is the id of its nearest centroid
(spherical k-means of a sample) and its residual from it, every dimension in ``bits`` bits,
buckets cut at the residuals' quantiles.

The codec is numpy: faiss's k-means and residual quantizers would add a 30 MB dependency to
the base install for a few lines of arithmetic, and none of its codecs is ColBERTv2's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import LexedgeError

CENTROIDS_FILE, BUCKETS_FILE = "centroids.npy", "buckets.npy"
BITS = (1, 2, 4, 8)
DEFAULT_BITS = 4
#: Centroids at most (``bench/results/stored_states_c4096.md``).
CENTROIDS = 4096
KMEANS_ITERATIONS = 10
#: Sampled tokens per centroid at least: a small corpus gets fewer centroids.
TOKENS_PER_CENTROID = 16
#: Residual values the buckets' quantiles are taken from at most.
QUANTILE_SAMPLE = 1 << 22
#: Tokens assigned to centroids per matrix product (its scores: 32 MB at 4,096 centroids).
ASSIGN_BLOCK = 2048


class ResidualCodec:
    """ColBERTv2's residual compression of unit vectors.

    Args:
        centroids: float32 [centroids, dim], unit rows.
        cutoffs: the ``2^bits - 1`` residual values that separate the buckets.
        values: the ``2^bits`` values the buckets are read back as.

    Example::

        codec = ResidualCodec.fit(sample_states, bits=2)
        restored = codec.decode(codec.encode(states))  # unit vectors near ``states``
    """

    def __init__(self, centroids: np.ndarray, cutoffs: np.ndarray, values: np.ndarray):
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.cutoffs = np.asarray(cutoffs, dtype=np.float32)
        self.values = np.asarray(values, dtype=np.float32)
        self.bits = int(np.log2(len(self.values)))
        if len(self.values) != 2 ** self.bits or self.bits not in BITS \
                or len(self.cutoffs) != len(self.values) - 1:
            raise LexedgeError(f"residual codec: {len(self.values)} bucket values and "
                               f"{len(self.cutoffs)} cut points do not make 1, 2, 4 or 8 bits")
        self.dimension = self.centroids.shape[1]
        if self.dimension * self.bits % 8:
            raise LexedgeError(f"residual codec: {self.dimension} dimensions of {self.bits} "
                               "bits do not fill whole bytes")
        self.record_bytes = 2 + self.dimension * self.bits // 8
        self._shifts = np.arange(8 - self.bits, -1, -self.bits, dtype=np.uint8)
        # every code byte's bucket values, as one opaque item per byte: reading a byte's
        # values is then one np.take (a fancy index over the unpacked codes was most of a
        # search's time from stored states)
        per_byte = 8 // self.bits
        unpacked = (np.arange(256, dtype=np.uint8)[:, None] >> self._shifts) & np.uint8(
            2 ** self.bits - 1)
        self._byte_values = np.ascontiguousarray(self.values[unpacked]).view(
            np.dtype((np.void, 4 * per_byte))).ravel()

    @classmethod
    def fit(cls, sample: np.ndarray, bits: int = DEFAULT_BITS, centroids: int = CENTROIDS,
            iterations: int = KMEANS_ITERATIONS, seed: int = 0,
            tokens_per_centroid: int = TOKENS_PER_CENTROID) -> "ResidualCodec":
        """Fit on ``sample`` (float32 [tokens, dim], unit rows): spherical k-means for the
        centroids (at most ``centroids``, a power of two with at least
        :data:`TOKENS_PER_CENTROID` sampled tokens each), then the residuals' quantiles."""
        if bits not in BITS:
            raise LexedgeError(f"passage state bits: {bits} is not one of "
                               f"{', '.join(map(str, BITS))}")
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        count = max(1, min(centroids, len(sample) // tokens_per_centroid))
        count = 1 << (count.bit_length() - 1)
        rng = np.random.default_rng(seed)
        found = sample[rng.choice(len(sample), count, replace=False)].copy()
        for _ in range(iterations):
            nearest = _nearest(sample, found)
            # summed per centroid one dimension at a time: no copy of the sample
            sums = np.stack([np.bincount(nearest, weights=sample[:, dimension],
                                         minlength=count)
                             for dimension in range(sample.shape[1])], axis=1)
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            used = norms[:, 0] > 0  # a centroid no token chose stays where it was
            found[used] = sums[used] / norms[used]
        # the residuals' quantiles from at most QUANTILE_SAMPLE values: as good as all, and
        # no second copy of the sample in memory
        tokens = rng.integers(0, len(sample), max(1, QUANTILE_SAMPLE // sample.shape[1])) \
            if sample.size > QUANTILE_SAMPLE else np.arange(len(sample))
        residual = (sample[tokens] - found[_nearest(sample[tokens], found)]).ravel()
        levels = 2 ** bits
        return cls(found, np.quantile(residual, np.arange(1, levels) / levels),
                   np.quantile(residual, (np.arange(levels) + 0.5) / levels))

    def encode(self, states: np.ndarray) -> np.ndarray:
        """uint8 [tokens, :attr:`record_bytes`]: each token's centroid id and packed codes."""
        states = np.ascontiguousarray(states, dtype=np.float32)
        nearest = _nearest(states, self.centroids)
        codes = np.searchsorted(self.cutoffs, states - self.centroids[nearest]).astype(np.uint8)
        per_byte = 8 // self.bits
        grouped = codes.reshape(len(states), -1, per_byte) << self._shifts
        records = np.empty((len(states), self.record_bytes), dtype=np.uint8)
        records[:, :2] = nearest.astype("<u2").view(np.uint8).reshape(-1, 2)
        records[:, 2:] = np.bitwise_or.reduce(grouped, axis=2)
        return records

    def decode(self, records: np.ndarray) -> np.ndarray:
        """float32 [tokens, dim] unit vectors: the centroid plus each bucket's value."""
        records = np.asarray(records, dtype=np.uint8)
        ids = np.ascontiguousarray(records[:, :2]).view("<u2").ravel()
        restored = self.centroids[ids]
        restored += np.take(self._byte_values, records[:, 2:]).view(np.float32).reshape(
            len(records), self.dimension)
        norms = np.sqrt(np.einsum("ij,ij->i", restored, restored))
        restored /= np.where(norms > 0, norms, 1)[:, None]
        return restored

    def save(self, folder: Path) -> None:
        np.save(folder / CENTROIDS_FILE, self.centroids, allow_pickle=False)
        buckets = np.zeros((2, len(self.values)), dtype=np.float32)
        buckets[0, :-1], buckets[1] = self.cutoffs, self.values
        np.save(folder / BUCKETS_FILE, buckets, allow_pickle=False)

    @classmethod
    def load(cls, folder: Path) -> "ResidualCodec":
        buckets = np.load(folder / BUCKETS_FILE, allow_pickle=False)
        return cls(np.load(folder / CENTROIDS_FILE, allow_pickle=False), buckets[0, :-1],
                   buckets[1])


def _nearest(states: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each row's nearest centroid by cosine, :data:`ASSIGN_BLOCK` rows per product."""
    nearest = np.empty(len(states), dtype=np.int64)
    scores = np.empty((min(ASSIGN_BLOCK, len(states)), len(centroids)), dtype=np.float32)
    for start in range(0, len(states), ASSIGN_BLOCK):
        block = states[start:start + ASSIGN_BLOCK]
        # one buffer for every block: fresh pages cost more than the product on small VMs
        np.matmul(block, centroids.T, out=scores[:len(block)])
        nearest[start:start + len(block)] = np.argmax(scores[:len(block)], axis=1)
    return nearest
