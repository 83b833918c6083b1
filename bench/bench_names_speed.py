"""Seconds to suggest names for N images' clusters from their recorded class scores
(:mod:`scan_core.method.naming`): the class mass of every cluster and the WordNet lift, for the
ImageNet classifier's ``(N, 1000)`` probabilities and for CLIP zero-shot ones over the WordNet
vocabulary (:class:`~scan_core.method.zero_shot.ZeroShotProbs`, computed from ``(N, 768)``
features as they are read). The scores are synthetic (each cluster peaked on a few classes, random
CLIP vectors): the time depends on the sizes, not on what the images show.

    python bench/bench_names_speed.py [--images 10000] [--clusters 100] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from scan_core.method.naming import ClassProbs, Taxonomy, class_mass, imagenet_taxonomy, suggest_names, wordnet_taxonomy
from scan_core.method.zero_shot import TextEmbeddings, ZeroShotProbs


def seconds(probs: ClassProbs, taxonomy: Taxonomy, clusters: np.ndarray, k: int, repeats: int) -> tuple[float, int]:
    """The best of ``repeats`` timings of naming every cluster, and how many got a name."""
    best, named = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        mass = class_mass(probs, clusters, np.ones(len(clusters)), k)
        names = suggest_names(mass, np.bincount(clusters, minlength=k), taxonomy)
        best, named = min(best, time.perf_counter() - started), sum(s.name is not None for s in names)
    return best, named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clusters = rng.integers(0, args.clusters, args.images)
    imagenet, vocabulary = imagenet_taxonomy(), wordnet_taxonomy()
    peaks = rng.integers(0, 1000, (args.clusters, 3))
    probs = rng.dirichlet(np.full(1000, 0.01), args.images)
    probs[np.arange(args.images)[:, None], peaks[clusters]] += rng.dirichlet(np.ones(3), args.images) * 4
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float16)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    text = TextEmbeddings(unit(rng.normal(size=(vocabulary.num_classes, 512))).astype(np.float32),
                          rng.normal(size=(768, 512)).astype(np.float32) / 768 ** 0.5, 100.0)
    features = rng.normal(size=(args.images, 768)).astype(np.float32)
    print(f"| route | images | clusters | classes | seconds (best of {args.repeats}) | named |")
    print("|---|---|---|---|---|---|")
    for route, scores, taxonomy in (("ImageNet classifier", probs, imagenet),
                                    ("CLIP zero-shot", ZeroShotProbs(features, text), vocabulary)):
        took, named = seconds(scores, taxonomy, clusters, args.clusters, args.repeats)
        print(f"| {route} | {args.images:,} | {args.clusters} | {taxonomy.num_classes:,} | {took:.2f} | {named} |")


if __name__ == "__main__":
    main()
