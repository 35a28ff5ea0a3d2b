"""Evaluation metrics: unbiased pass@k, verifier ranking/calibration metrics, Best-of-N selection.

All pure functions of plain lists/arrays; scikit-learn computes AUC.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021), in the numerically
    stable product form 1 - prod_{i=n-c+1}^{n} (1 - k/i)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def expected_calibration_error(probs: Sequence[float], labels: Sequence[bool], bins: int = 10) -> float:
    """ECE: |accuracy - confidence| of each equal-width probability bin, weighted by the bin's size."""
    groups: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for p, y in zip(probs, labels):
        groups[min(int(p * bins), bins - 1)].append((p, y))
    total = len(probs)
    return sum(abs(sum(y for _, y in g) / len(g) - sum(p for p, _ in g) / len(g)) * len(g) / total
               for g in groups.values())


def verifier_metrics(scores: Sequence[float], labels: Sequence[bool], groups: Sequence[str]) -> dict:
    """AUC, accuracy (score > 0), calibration (ECE, Brier), within-problem pair accuracy and Best-of-N
    selection accuracy.

    `groups` names each candidate's problem. AUC ranks all candidates together, so a verifier that only
    knows which problems are hard scores well on it; Best-of-N needs the ranking inside a problem:
    `pair_accuracy` is the share of (correct, wrong) pairs of the same problem scored in that order (ties
    count half; 0.5 is chance). Selection accuracy: over problems that have at least one correct and one
    wrong candidate, the share where the top-scored candidate is correct; `selection_random` is the same
    share in expectation for a random pick, the baseline to beat.
    """
    from sklearn.metrics import roc_auc_score

    labels = [bool(y) for y in labels]
    probs = [sigmoid(s) for s in scores]
    by_problem: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for s, y, g in zip(scores, labels, groups):
        by_problem[g].append((s, y))
    mixed = [c for c in by_problem.values() if any(y for _, y in c) and not all(y for _, y in c)]
    ordered = [(sp > sn) + 0.5 * (sp == sn) for c in mixed for sp, yp in c if yp for sn, yn in c if not yn]
    return {
        "auc": roc_auc_score(labels, scores) if 0 < sum(labels) < len(labels) else float("nan"),
        "accuracy": sum((s > 0) == y for s, y in zip(scores, labels)) / len(labels),
        "ece": expected_calibration_error(probs, labels),
        "brier": sum((p - y) ** 2 for p, y in zip(probs, labels)) / len(labels),
        "pair_accuracy": sum(ordered) / len(ordered) if ordered else float("nan"),
        "selection_accuracy": sum(max(c, key=lambda t: t[0])[1] for c in mixed) / len(mixed) if mixed else float("nan"),
        "selection_random": sum(sum(y for _, y in c) / len(c) for c in mixed) / len(mixed) if mixed else float("nan"),
        "positives": sum(labels),
        "examples": len(labels),
    }
