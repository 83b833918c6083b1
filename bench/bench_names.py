"""How right the suggested cluster names are (:mod:`scan_core.explore.names`) on labelled semantic
colour folders: the Tux Paint clip-art sets of ``bench/stamp_sets.py`` (``animals``, ``topics``),
trained as a user would (``python -m scan_core train --dataset FOLDER``, every setting ``auto``).

Each class folder is mapped once, by hand, to WordNet 3.0 synsets (:data:`TRUTH`: a synset and
the most general hypernym of it that still names the class, its *level*). A cluster's true class
is the majority true label of its members. A confident name is *right* when its synset is a
class synset, a hyponym of one, or a hypernym of one no more general than its level (never
entity / object / whole / artifact / organism / matter); else *wrong*. A name for a cluster whose
class maps to no synset (``seasonal``: Christmas, Easter, Halloween stamps) is *unjudged*. A
*medium* name is one whose synset is, or lies under, a class that describes a picture's medium
or style (:data:`scan_core.method.naming.MEDIUM_CLASSES`), or covers only such classes: there
must be none. For a name kept apart from another cluster's (``placental (goat)``) its synset is
the part in brackets, the one that tells the clusters apart.

    python bench/bench_names.py [--out /tmp/names_bench] [--sets animals topics] [--reuse]

``--reuse`` takes a finished run already in ``OUT/runs/<set>`` (and the set's folder in ``OUT``)
instead of training again.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stamp_sets import make_set

from scan_core.explore.curation import replay
from scan_core.explore.names import run_names
from scan_core.explore.results import RunResults
from scan_core.method.naming import MEDIUM_CLASSES, imagenet_taxonomy

ROOT = Path(__file__).resolve().parents[1]

#: Never right, whatever the class.
NEVER = ("entity", "object", "whole", "artifact", "organism", "matter")
#: Class folder -> ((synset, level), ...) as wnids (WordNet 3.0, looked up by hand); None: no synset.
TRUTH: dict[str, dict[str, tuple[tuple[str, str], ...] | None]] = {
    "animals": {
        "birds": (("n01503061", "n01503061"),),             # bird; level bird
        "fish": (("n02512053", "n01473806"),),              # fish; level aquatic vertebrate
        "insects": (("n02159955", "n01767661"),),           # insect; level arthropod
        "mammals": (("n01861778", "n01861778"),),           # mammal; level mammal
    },
    "topics": {
        "animals": (("n00015388", "n00015388"),),           # animal
        "clothes": (("n03051540", "n03051540"),),           # clothing
        "food": (("n00021265", "n00021265"), ("n07555863", "n07555863")),  # food (nutrient), food (solid food)
        "household": (("n03405265", "n03405265"), ("n02729837", "n02729837"),   # furnishing, appliance
                      ("n04516672", "n04516672"), ("n04381994", "n04381994")),  # utensil, tableware
        "plants": (("n00017222", "n00017222"), ("n13086908", "n13086908")),     # plant, plant part
        "seasonal": None,                                   # holiday things: no one synset
        "symbols": (("n06793231", "n06793231"),),           # sign
        "town": (("n02913152", "n02913152"),),              # building
        "vehicles": (("n04524313", "n03100490"),),          # vehicle; level conveyance
    },
}


@dataclass(frozen=True)
class ClusterVerdict:
    """One cluster: its size, true class (majority label) and that class's share of it, the
    suggestion (None: no confident name) and its verdict: right, wrong, unjudged, medium or ''."""

    cluster: int
    size: int
    true_class: str
    purity: float
    name: str | None
    verdict: str


def verdict(wnid: str, truth: tuple[tuple[str, str], ...] | None) -> str:
    """right / wrong / unjudged / medium for a name whose synset is ``wnid``."""
    taxonomy = imagenet_taxonomy()
    s = taxonomy.index(wnid)
    medium = [taxonomy.class_index(name) for name in MEDIUM_CLASSES]  # output indices
    under = taxonomy.classes_under(s)  # the classes at or under the name
    if np.isin(taxonomy.classes[medium], taxonomy.ancestors(s)).any() or (len(under) and set(under.tolist()) <= set(medium)):
        return "medium"
    if truth is None:
        return "unjudged"
    if taxonomy.names[s] in NEVER:
        return "wrong"
    for synset, level in truth:
        t, top = taxonomy.index(synset), taxonomy.index(level)
        if taxonomy.is_under(s, t) or (taxonomy.is_under(t, s) and taxonomy.is_under(s, top)):
            return "right"
    return "wrong"


def judge(run_dir: Path, truth: dict[str, tuple | None]) -> list[ClusterVerdict]:
    """Every cluster of the finished run ``run_dir``, named and judged."""
    results = RunResults.load(run_dir)
    state = replay(results.clusters, [])  # the run's own clusters, whatever its curation says
    names = run_names(results, state)
    if names.needs_recording:
        from scan_core.engine.naming import record_names_inputs
        record_names_inputs(run_dir)
        names = run_names(results, state)
    if names.unavailable:
        raise SystemExit(f"{run_dir}: {names.unavailable}")
    labels, classes = results.images.labels, results.images.class_names
    out = []
    for s in names.suggestions:
        members = state.members(s.cluster)
        if not len(members):
            continue
        counts = np.bincount(labels[members], minlength=len(classes))
        true = classes[int(counts.argmax())]
        out.append(ClusterVerdict(s.cluster, len(members), true, counts.max() / len(members), s.name,
                                  verdict(s.wnid, truth[true]) if s.name is not None else ""))
    return out


def train(folder: Path, run_dir: Path) -> float:
    """Train ``folder`` into ``run_dir`` as a user would; returns the seconds it took."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scan_core", "train", "--dataset", str(folder), "--out", str(run_dir)],
                   cwd=ROOT, check=True)
    return time.perf_counter() - started


def finished(run_dir: Path) -> bool:
    status = run_dir / "status.json"
    return status.exists() and json.loads(status.read_text()).get("state") == "finished"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/names_bench"))
    parser.add_argument("--sets", nargs="+", default=list(TRUTH), choices=list(TRUTH))
    parser.add_argument("--reuse", action="store_true", help="use finished runs in OUT/runs instead of training")
    args = parser.parse_args()
    rows = []
    for name in args.sets:
        folder, run_dir = args.out / name, args.out / "runs" / name
        if not (args.reuse and folder.is_dir()):
            make_set(args.out, name)
        if not (args.reuse and finished(run_dir)):
            print(f"training {name} ({train(folder, run_dir):.0f} s)", file=sys.stderr)
        clusters = judge(run_dir, TRUTH[name])
        print(f"\n{name}: cluster  size  true class (share)   suggestion -> verdict")
        for c in clusters:
            print(f"  {c.cluster:>7}  {c.size:>4}  {c.true_class:<10} ({c.purity:.0%})  "
                  f"{c.name or '(no confident name)'}{' -> ' + c.verdict if c.verdict else ''}")
        named = [c for c in clusters if c.name is not None]
        judged = [c for c in named if c.verdict != "unjudged"]
        count = lambda v: sum(c.verdict == v for c in judged)
        rows.append((name, len(clusters), len(named), len(judged), count("right"), count("wrong"), count("medium"),
                     len(named) - len(judged)))
    print("\n| set | clusters | named | right (of judged names) | wrong | medium / style names | unjudged names |")
    print("|---|---|---|---|---|---|---|")
    for name, k, named, judged, right, wrong, medium, unjudged in rows:
        share = lambda n, of: f"{n}/{of} ({n / of:.0%})" if of else "0/0"
        print(f"| {name} | {k} | {share(named, k)} | {share(right, judged)} | {share(wrong, judged)} | {medium} | "
              f"{unjudged} |")


if __name__ == "__main__":
    main()
