"""Writes ``imagenet_wordnet.json``, the WordNet noun hierarchy above the 1,000 ImageNet classes that
:mod:`scan_core.method.naming` reads: run once, where the Debian package ``wordnet-base`` (WordNet 3.0
in ``/usr/share/wordnet``) and the pinned ``timm`` are installed::

    python -m scan_core.method.imagenet_wordnet

The classes come in the order of ImageNet-1k classifiers' outputs (timm's ``imagenet_synsets.txt``,
the wnids sorted, as torchvision and EfficientNet-Lite order them); every synset above one of them
(hypernyms and instance hypernyms, up to ``entity``) is kept with its first lemma as its name.
"""
from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
HIERARCHY_FILE = Path(__file__).with_name("imagenet_wordnet.json")


def imagenet_wnids() -> list[str]:
    """The ImageNet-1k wnids (``n01440764``, ...) in the order of a classifier's 1,000 outputs."""
    text = files("timm.data._info").joinpath("imagenet_synsets.txt").read_text()
    wnids = text.split()
    if len(wnids) != 1000 or wnids != sorted(wnids):
        raise ValueError(f"timm's imagenet_synsets.txt holds {len(wnids)} wnids, not the 1,000 sorted ones")
    return wnids


def read_nouns(root: Path = WORDNET_DIR) -> dict[str, tuple[str, list[str]]]:
    """Every noun synset of the WordNet database in ``root`` (``data.noun``, whose lines wndb(5WN)
    describes): wnid -> (its first lemma, the wnids of its hypernyms and instance hypernyms)."""
    path = root / "data.noun"
    if not path.is_file():
        raise FileNotFoundError(f"no WordNet database in {root}: apt-get install wordnet-base")
    nouns = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("  "):  # the licence at the top
                continue
            fields = line.split(" | ")[0].split()
            words = int(fields[3], 16)
            pointers = fields[4 + 2 * words + 1:]
            parents = [f"n{pointers[i + 1]}" for i in range(0, len(pointers), 4)
                       if pointers[i] in ("@", "@i") and pointers[i + 2] == "n"]
            nouns[f"n{fields[0]}"] = (fields[4].replace("_", " "), sorted(parents))
    return nouns


def build_hierarchy(root: Path = WORDNET_DIR) -> dict:
    """``{"classes": [wnid, ...], "synsets": {wnid: {"name": str, "parents": [wnid, ...]}}}``:
    the classes in output order, and every synset at or above one of them."""
    nouns = read_nouns(root)
    classes = imagenet_wnids()
    synsets: dict[str, dict] = {}
    todo = list(classes)
    while todo:
        wnid = todo.pop()
        if wnid not in synsets:
            name, parents = nouns[wnid]
            synsets[wnid] = {"name": name, "parents": parents}
            todo.extend(parents)
    return {"wordnet": "3.0", "classes": classes, "synsets": dict(sorted(synsets.items()))}


def main() -> None:
    HIERARCHY_FILE.write_text(json.dumps(build_hierarchy(), separators=(",", ":")) + "\n")
    print(f"wrote {HIERARCHY_FILE}")


if __name__ == "__main__":
    main()
