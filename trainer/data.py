"""Training examples: (query, positive) pairs from the training qrels and from the corpus
itself (article title → article text), and the hard negatives attached to them.

Examples and their negatives are plain JSON lines, written into the stage's working folder
before an epoch starts, so a resumed run trains on exactly what it would have.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lexedge.runtime.datasets import BeirDataset, Document
from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.storage import atomic_file

QRELS, TITLE = "qrels", "title"


@dataclass
class Example:
    """One (query, positive) pair.

    Attributes:
        query: the query text (a user question, or an article title for a weak pair).
        positive: the positive document id.
        judged: every document judged relevant to the query (never a negative).
        kind: ``qrels`` (training judgments) or ``title`` (weak supervision: the passage is
            the article text without its title, otherwise the pair would be a copy task).
        negatives: mined candidates, best first; a step samples from them.
        query_id: the query's id for qrels pairs.
    """

    query: str
    positive: str
    judged: list[str]
    kind: str = QRELS
    negatives: list[str] = field(default_factory=list)
    query_id: str | None = None


@dataclass
class TrainingData:
    """The corpus, queries and training judgments of a BEIR folder, held in memory."""

    dataset: BeirDataset
    documents: dict[str, Document]
    queries: dict[str, str]
    train_qrels: dict[str, dict[str, int]]

    @classmethod
    def load(cls, data_dir: str | Path, train_split: str) -> "TrainingData":
        dataset = BeirDataset(Path(data_dir))
        documents = {doc.id: doc for doc in dataset.corpus()}
        queries = dataset.queries()
        qrels = dataset.qrels(train_split, query_ids=queries, doc_ids=documents)
        return cls(dataset, documents, queries, qrels)

    @property
    def doc_ids(self) -> list[str]:
        return list(self.documents)

    def passage(self, doc_id: str, kind: str = QRELS) -> str:
        document = self.documents[doc_id]
        return document.text if kind == TITLE else document.indexed_text

    def qrels_examples(self) -> list[Example]:
        """One example per judged (query, relevant document) pair, in file order."""
        examples = []
        for query_id, judgments in self.train_qrels.items():
            judged = sorted(d for d, grade in judgments.items() if grade > 0)
            for doc_id in judged:
                examples.append(Example(self.queries[query_id], doc_id, judged, QRELS,
                                        query_id=query_id))
        return examples

    def title_examples(self, count: int, seed: int) -> list[Example]:
        """``count`` title → text pairs from titled articles (-1: all), seeded."""
        titled = [doc for doc in self.documents.values() if doc.title and doc.text]
        if count == 0 or not titled:
            return []
        if 0 < count < len(titled):
            rng = np.random.default_rng(seed)
            titled = [titled[i] for i in sorted(rng.choice(len(titled), count, replace=False))]
        return [Example(doc.title, doc.id, [doc.id], TITLE) for doc in titled]


def base_examples(data: TrainingData, *, train_qrels: bool, weak_pairs: int,
                  seed: int) -> list[Example]:
    examples = data.qrels_examples() if train_qrels else []
    examples += data.title_examples(weak_pairs, seed)
    if not examples:
        raise LexedgeError("a stage has no training examples: enable train_qrels or "
                           "weak_pairs")
    return examples


def write_examples(path: Path, examples: list[Example]) -> None:
    """Written through a temporary file of this process and a rename: ranks that mined the
    same examples may write them at once."""
    with atomic_file(path) as handle:
        for example in examples:
            handle.write((json.dumps(asdict(example), ensure_ascii=False) + "\n").encode())


def read_examples(path: Path) -> list[Example]:
    with path.open(encoding="utf-8") as handle:
        return [Example(**json.loads(line)) for line in handle if line.strip()]


def epoch_rng(seed: int, stage: int, epoch: int) -> np.random.Generator:
    """The generator of one epoch's order and negative sampling: a pure function of its
    coordinates, so resuming needs no saved numpy state."""
    return np.random.default_rng([seed, stage, epoch])
