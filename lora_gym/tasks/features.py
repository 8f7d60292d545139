"""Data meta-features of a task that need more than counting: nearest-neighbour label agreement.

`knn_label_agreement` is a model-free proxy for label noise and class separability: the fraction
of training rows whose nearest other training row (cosine similarity of TF-IDF word vectors) has
the same label. Noisy labels lower it (a flipped label rarely agrees with its neighbour), and so
do classes that share their vocabulary. It only reads the training rows, which the agent is
entitled to see.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

KNN_MAX_ROWS = 1000
"""Rows sampled (seeded) to compute the agreement on larger tasks; all rows below it."""
_WORD = re.compile(r"[a-z0-9]+")


def knn_label_agreement(texts: Sequence[str], labels: np.ndarray, max_rows: int = KNN_MAX_ROWS,
                        seed: int = 0) -> float:
    """Fraction of rows whose nearest other row (TF-IDF cosine) has the same label.

    Args:
        texts: Training texts.
        labels: Their class indices.
        max_rows: At most this many rows are used (a seeded sample), which bounds the cost.
        seed: Seed of the sample.

    Returns:
        The agreement in [0, 1] (0.0 for fewer than 2 rows). Ties go to the lower row index;
        a row without any word (or sharing none) counts its first other row as its neighbour.

    """
    from scipy import sparse

    labels = np.asarray(labels)
    if len(texts) < 2:
        return 0.0
    rows = np.arange(len(texts))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for i in rows:
        words = {vocab.setdefault(w, len(vocab)) for w in _WORD.findall(texts[i].lower())}
        indices.extend(sorted(words))
        indptr.append(len(indices))
    data = np.ones(len(indices))
    counts = sparse.csr_matrix((data, indices, indptr), shape=(len(rows), max(len(vocab), 1)))
    idf = np.log((1 + len(rows)) / (1 + np.bincount(indices, minlength=counts.shape[1]))) + 1
    weighted = counts @ sparse.diags(idf)
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    weighted = sparse.diags(1.0 / np.maximum(norms, 1e-12)) @ weighted
    similarity = (weighted @ weighted.T).toarray()
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    return float(np.mean(labels[rows] == labels[rows[nearest]]))
