"""The importer's op table: one converter per (ONNX operator, opset range), found by ``lookup``.

As in onnx2torch's registry, a converter names the operator and the first (and, where the operator changed
meaning later, the last) opset version it implements: ``@converter("Softmax", until=12)`` flattens to 2-D as
opset 1-12 did, ``@converter("Softmax", since=13)`` works on one axis. The opset is the model's import of the
standard domain; the conformance suite (tests/frontend/test_conformance.py) runs every entry on the onnx
package's node test cases at every schema version the package defines, and ``docs/operators.md`` is written
from this table by ``python -m ftcompile.frontend.optable``.

Operators the importer does not take are listed in ``OUT_OF_SCOPE`` with the reason; every standard-domain
operator is either in the table or in that list (tested).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Converter = Callable[..., object]


@dataclass(frozen=True)
class Entry:
    """``fn(b, node, inputs, attrs)`` converts ``op`` for the opsets ``since`` to ``until`` (inclusive; None: open)."""

    op: str
    since: int
    until: int | None
    fn: Converter

    def covers(self, opset: int) -> bool:
        return self.since <= opset and (self.until is None or opset <= self.until)


TABLE: dict[str, list[Entry]] = {}


def converter(*ops: str, since: int = 1, until: int | None = None):
    """Register the decorated function for ``ops`` at opsets ``since``..``until``; ranges of one op must not overlap."""
    def register(fn: Converter) -> Converter:
        for op in ops:
            entries = TABLE.setdefault(op, [])
            new = Entry(op, since, until, fn)
            clash = [e for e in entries if e.covers(since) or new.covers(e.since)]
            if clash:
                raise ValueError(f"{op}: opsets {since}-{until} overlap the converter for "
                                 f"{clash[0].since}-{clash[0].until}")
            entries.append(new)
            entries.sort(key=lambda e: e.since)
        return fn
    return register


def lookup(op: str, opset: int) -> Converter | None:
    """The converter of ``op`` in a model importing the standard domain at ``opset``, or None."""
    return next((e.fn for e in TABLE.get(op, ()) if e.covers(opset)), None)


def supported() -> list[str]:
    """The operators the table converts at some opset, sorted."""
    return sorted(TABLE)


_SEQUENCE = "sequence-typed values: the importer builds tensor graphs (a list of tensors is not a torch.fx value here)"
_OPTIONAL = "optional-typed values have no tensor equivalent in a trainable graph"
_STRING = "string tensors: torch has no string dtype"
_RANDOM = ("draws random numbers: its output cannot match onnxruntime's draws, and hardening needs the same graph "
           "in torch and the runtime")

OUT_OF_SCOPE: dict[str, str] = {
    **{op: _SEQUENCE for op in ("SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
                                "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence")},
    **{op: _OPTIONAL for op in ("Optional", "OptionalGetElement", "OptionalHasElement")},
    **{op: _STRING for op in ("RegexFullMatch", "StringConcat", "StringNormalizer", "StringSplit")},
    "TfIdfVectorizer": "text n-gram counting over token ids (a feature extractor, nothing to train or drift)",
    "ImageDecoder": "decodes encoded image bytes (JPEG/PNG): input preprocessing, not a network layer",
    **{op: _RANDOM for op in ("Bernoulli", "Multinomial", "RandomNormal", "RandomNormalLike", "RandomUniform",
                              "RandomUniformLike")},
    "If": "control flow: branches are subgraphs chosen at run time; export the branch your model takes",
    "Loop": "control flow: a subgraph iterated a data-dependent number of times; export with the loop unrolled",
    "Scan": "control flow: a subgraph scanned over a sequence; export the recurrence unrolled or as LSTM/GRU/RNN",
}
