"""Writes ``wordnet_nouns.json.gz``, the vocabulary that clusters are named from zero-shot
(:func:`scan_core.method.naming.wordnet_taxonomy`, :mod:`scan_core.method.zero_shot`): run once,
where the Debian package ``wordnet-base`` (WordNet 3.0 in ``/usr/share/wordnet``) is installed::

    python -m scan_core.method.wordnet_nouns

The vocabulary's nouns are WordNet's common physical things: every noun synset under ``physical
entity`` that is no proper noun (no instance hypernym), that a tagged corpus uses at least
:data:`MIN_TAGS` times (the sense counts of ``cntlist.rev``), that is neither one of
:data:`~scan_core.method.naming.TOO_GENERAL` nor above one, and that is no picture, drawing or
other ``representation`` and no ``process`` (:data:`LEFT_OUT`), and no kind of person
(:data:`PERSON` itself is one); and the 1,000 ImageNet classes (``imagenet_wordnet.json``). Every
synset above a noun is kept too, with its first lemma as its name, in the layout of
``imagenet_wordnet.json``.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from .imagenet_wordnet import WORDNET_DIR, read_nouns, read_synsets
from .naming import HIERARCHY_FILE, VOCABULARY_FILE, general_wnids

PHYSICAL_ENTITY = "n00001930"
#: Subtrees of physical entity that name no thing a picture shows: processes (breathing, eating,
#: ...), and representations (a picture, drawing, photograph, map: how an image is made, which the
#: prompts already say).
LEFT_OUT = ("n00029677", "n04076846")
#: Person, but none of the kinds of person under it (terrorist, misanthrope, ...): what a picture of
#: someone shows is a person, and CLIP's labels for people carry its biases (Radford et al., 2021, §7).
PERSON = "n00007846"
#: The times a sense must be tagged in WordNet's semantic concordance for its noun to be named.
MIN_TAGS = 1


def sense_counts(root: Path = WORDNET_DIR) -> dict[str, int]:
    """``cntlist.rev``'s tag count of every sense key (``cat%1:05:00::`` -> 18)."""
    path = root / "cntlist.rev"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: apt-get install wordnet-base")
    counts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, count = line.split()
        counts[key] = int(count)
    return counts


def build_vocabulary(root: Path = WORDNET_DIR, min_tags: int = MIN_TAGS) -> dict:
    """``{"wordnet": "3.0", "classes": [wnid, ...], "synsets": {wnid: {"name", "parents"}}}``:
    the vocabulary's nouns, sorted, and every synset at or above one of them."""
    synsets, nouns, counts = read_synsets(root), read_nouns(root), sense_counts(root)
    above: dict[str, frozenset[str]] = {}

    def lift(wnid: str) -> frozenset[str]:  # wnid and its hypernyms (instance hypernyms too)
        if wnid not in above:
            above[wnid] = frozenset({wnid}.union(*(lift(p) for p in nouns[wnid][1])))
        return above[wnid]

    too_general = frozenset().union(*(lift(w) for w in general_wnids()))
    common = [wnid for wnid, synset in synsets.items()
              if not synset.instance_of and PHYSICAL_ENTITY in lift(wnid) and lift(wnid).isdisjoint(LEFT_OUT)
              and (wnid == PERSON or PERSON not in lift(wnid))
              and wnid not in too_general and sum(counts.get(key, 0) for key in synset.sense_keys()) >= min_tags]
    classes = sorted(set(common) | set(json.loads(HIERARCHY_FILE.read_text())["classes"]))
    kept = sorted(frozenset().union(*(lift(w) for w in classes)))
    return {"wordnet": "3.0", "classes": classes,
            "synsets": {w: {"name": nouns[w][0], "parents": nouns[w][1]} for w in kept}}


def main() -> None:
    text = json.dumps(build_vocabulary(), separators=(",", ":")) + "\n"
    VOCABULARY_FILE.write_bytes(gzip.compress(text.encode(), mtime=0))
    print(f"wrote {VOCABULARY_FILE}")


if __name__ == "__main__":
    main()
