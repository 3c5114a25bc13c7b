"""Metrics over a whole dataset's outputs: ``metric(outputs, labels) -> float`` (higher is better).

A metric that is a mean over examples also has ``per_example(outputs, labels) -> array``; validation then
reports a confidence interval that covers the finite example set too (``stats.summarize``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ftcompile.errors import ConfigError

Metric = Callable[[np.ndarray, np.ndarray], float]


class TopKAccuracy:
    """Fraction of examples whose label is among the ``k`` highest scores (a class: it pickles to workers)."""

    def __init__(self, k: int = 1):
        if k < 1:
            raise ConfigError(f"top-k needs k >= 1 (got {k}).")
        self.k = k
        self.__name__ = "accuracy" if k == 1 else f"top{k}_accuracy"

    def per_example(self, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """1.0 where the example is right, else 0.0 (the metric is their mean)."""
        scores = outputs.reshape(len(outputs), -1)
        if self.k == 1:
            return (scores.argmax(axis=1) == labels).astype(np.float64)
        top = np.argpartition(-scores, kth=min(self.k, scores.shape[1]) - 1, axis=1)[:, :self.k]
        return (top == labels[:, None]).any(axis=1).astype(np.float64)

    def __call__(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.per_example(outputs, labels)))


def example_scores(metric: Metric, outputs: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Per-example scores whose mean is the metric, or None when the metric is not such a mean.

    A user metric opts in with a ``per_example(outputs, labels) -> array`` attribute.
    """
    fn = getattr(metric, "per_example", None)
    return None if fn is None else np.asarray(fn(outputs, labels), dtype=np.float64).reshape(-1)


def top_k_accuracy(k: int = 1) -> Metric:
    return TopKAccuracy(k)


accuracy = top_k_accuracy(1)


def parse_metric(spec: "str | Metric") -> Metric:
    """``accuracy``, ``top5`` (any k) or ``package.module:function`` taking (outputs, labels) -> float."""
    if callable(spec):
        return spec
    if spec == "accuracy":
        return accuracy
    if spec.startswith("top") and spec[3:].isdigit():
        return top_k_accuracy(int(spec[3:]))
    if ":" in spec:
        from ftcompile.plugins import load_object

        fn = load_object(spec, "metric")
        attr = spec.partition(":")[2]
        if not callable(fn):
            raise ConfigError(f"metric {spec} is not callable; give a function (outputs, labels) -> float.")
        if not hasattr(fn, "__name__"):
            fn.__name__ = attr
        return fn
    raise ConfigError(f"--metric {spec!r} is unknown; use accuracy, top5 or package.module:function.")
