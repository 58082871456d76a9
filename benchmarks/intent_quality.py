"""How well the intent classifier (and the sentiment scorer) generalise beyond their seed data.

Two measurements, both as macro-F1 over the five intents:

* 5-fold stratified cross-validation on the shipped seed (``pipeline/seed_data/intent_seed.jsonl``):
  tickets, chats, survey answers, call and field notes and reviews about B2B SaaS products;
* the classifier fitted on the whole seed, scored on ``benchmarks/data/intent_holdout.jsonl``: 150
  app-store reviews of consumer apps (banking, fitness, food delivery, podcasts...), written separately
  in a different style and never used for fitting or tuning.

Each is reported for embeddings only and for embeddings plus lexical cues, next to a majority-class baseline.

External sets: none in /work/shared/datasets fits. CLINC150 and DSTC11 label what a banking/insurance
customer wants done (``transfer``, ``freeze_account``...) and Stack Overflow titles are labelled by tag;
none carries bug report / feature request / complaint / praise / question, and mapping their labels onto
ours would measure the mapping, not the classifier.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/intent_quality.py            # table
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/intent_quality.py --json     # one JSON line
    .venv/bin/python benchmarks/intent_quality.py --embedder hashing          # fast, no model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.embedding import HashingEmbedder, SentenceEmbedder  # noqa: E402
from pipeline.signals import (  # noqa: E402
    INTENTS,
    IntentClassifier,
    SentimentScorer,
    load_seed,
    signal_features,
)

HOLDOUT = Path(__file__).resolve().parent / "data" / "intent_holdout.jsonl"


def cross_validated_f1(X: np.ndarray, y: np.ndarray, *, C: float, folds: int = 5, seed: int = 0) -> float:
    """Macro-F1 of out-of-fold predictions."""
    predicted = np.empty_like(y)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        predicted[test] = IntentClassifier(C=C).fit(X[train], y[train]).predict(X[test])
    return float(f1_score(y, predicted, average="macro", labels=list(INTENTS)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    parser.add_argument("--cue-weight", type=float, default=0.5, help="weight of the lexical cues")
    parser.add_argument("--C", type=float, default=4.0, help="intent logistic regression C")
    parser.add_argument("--holdout", type=Path, default=HOLDOUT)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of tables")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    embedder = SentenceEmbedder() if args.embedder == "minilm" else HashingEmbedder(dim=256)
    seed = load_seed()
    holdout = load_seed(args.holdout)
    seed_texts = [e.text for e in seed]
    hold_texts = [e.text for e in holdout]
    y_seed = np.array([e.intent for e in seed])
    y_hold = np.array([e.intent for e in holdout])

    started = time.perf_counter()
    vectors = embedder.encode(seed_texts + hold_texts)
    embed_s = time.perf_counter() - started
    seed_vectors, hold_vectors = vectors[: len(seed)], vectors[len(seed) :]

    majority = max(INTENTS, key=lambda label: int((y_seed == label).sum()))
    rows = [
        {
            "features": "majority class",
            "cv_macro_f1": float(f1_score(y_seed, [majority] * len(y_seed), average="macro", labels=list(INTENTS))),
            "holdout_macro_f1": float(
                f1_score(y_hold, [majority] * len(y_hold), average="macro", labels=list(INTENTS))
            ),
            "holdout_accuracy": float(accuracy_score(y_hold, [majority] * len(y_hold))),
        }
    ]
    per_class = {}
    sentiment = {}
    for name, weight in (("embeddings", 0.0), (f"embeddings + cues x{args.cue_weight:g}", args.cue_weight)):
        if name != "embeddings" and weight == 0:
            continue
        X_seed = signal_features(seed_vectors, seed_texts, cue_weight=weight)
        X_hold = signal_features(hold_vectors, hold_texts, cue_weight=weight)
        classifier = IntentClassifier(C=args.C).fit(X_seed, y_seed)
        predicted = classifier.predict(X_hold)
        rows.append(
            {
                "features": name,
                "cv_macro_f1": cross_validated_f1(X_seed, y_seed, C=args.C),
                "holdout_macro_f1": float(f1_score(y_hold, predicted, average="macro", labels=list(INTENTS))),
                "holdout_accuracy": float(accuracy_score(y_hold, predicted)),
            }
        )
        p, r, f, n = precision_recall_fscore_support(y_hold, predicted, labels=list(INTENTS), zero_division=0)
        per_class = {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
            for i, label in enumerate(INTENTS)
        }
        scorer = SentimentScorer().fit(X_seed, [e.sentiment for e in seed])
        gold = np.array([e.sentiment for e in holdout])
        guess = scorer.predict(X_hold)
        score = scorer.score(X_hold)
        sentiment = {
            "holdout_accuracy": float(accuracy_score(gold, guess)),
            "holdout_macro_f1": float(f1_score(gold, guess, average="macro")),
            "mean_score_by_gold": {
                label: float(score[gold == label].mean())
                for label in ("negative", "neutral", "positive")
                if (gold == label).any()
            },
        }

    result = {
        "embedder": embedder.name,
        "seed_items": len(seed),
        "holdout_items": len(holdout),
        "C": args.C,
        "embed_seconds": round(embed_s, 2),
        "intent": rows,
        "holdout_per_class": per_class,
        "sentiment": sentiment,
    }
    if args.json:
        print(json.dumps(result))
        return 0

    print(
        f"intent quality — {embedder.name}; seed {len(seed)} items (5-fold CV), holdout {len(holdout)} "
        f"app reviews; embedding took {embed_s:.1f}s"
    )
    print(f"{'features':<28} {'CV macro-F1':>12} {'holdout macro-F1':>17} {'holdout acc':>12}")
    for row in rows:
        print(
            f"{row['features']:<28} {row['cv_macro_f1']:>12.3f} {row['holdout_macro_f1']:>17.3f} "
            f"{row['holdout_accuracy']:>12.3f}"
        )
    print(f"\nholdout per intent ({rows[-1]['features']})")
    print(f"{'intent':<16} {'precision':>9} {'recall':>7} {'F1':>6} {'n':>4}")
    for label, m in per_class.items():
        print(f"{label:<16} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} {m['support']:>4}")
    print(
        f"\nsentiment on holdout: accuracy {sentiment['holdout_accuracy']:.3f}, "
        f"macro-F1 {sentiment['holdout_macro_f1']:.3f}, mean score by gold label "
        + ", ".join(f"{k} {v:+.2f}" for k, v in sentiment["mean_score_by_gold"].items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
