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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class NounSynset:
    """One noun synset of WordNet's ``data.noun``: its ``lemmas`` (spaces for underscores, the first
    is its name), their ``lex_ids``, its lexicographer file number ``lex_file``, the wnids of its
    ``hypernyms`` and of its ``instance_of`` (instance hypernyms: a proper noun's)."""

    lemmas: tuple[str, ...]
    lex_ids: tuple[int, ...]
    lex_file: int
    hypernyms: tuple[str, ...]
    instance_of: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.lemmas[0]

    def sense_keys(self) -> tuple[str, ...]:
        """Each lemma's sense key (``cat%1:05:00::``), as ``cntlist.rev`` names them."""
        return tuple(f"{lemma.lower().replace(' ', '_')}%1:{self.lex_file:02d}:{lex_id:02d}::"
                     for lemma, lex_id in zip(self.lemmas, self.lex_ids, strict=True))


def read_synsets(root: Path = WORDNET_DIR) -> dict[str, NounSynset]:
    """Every noun synset of the WordNet database in ``root`` (``data.noun``, whose lines wndb(5WN)
    describes), by wnid."""
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
            parents = {kind: tuple(f"n{pointers[i + 1]}" for i in range(0, len(pointers), 4)
                                   if pointers[i] == kind and pointers[i + 2] == "n") for kind in ("@", "@i")}
            nouns[f"n{fields[0]}"] = NounSynset(tuple(fields[4 + 2 * i].replace("_", " ") for i in range(words)),
                                                tuple(int(fields[5 + 2 * i], 16) for i in range(words)),
                                                int(fields[1]), parents["@"], parents["@i"])
    return nouns


def read_nouns(root: Path = WORDNET_DIR) -> dict[str, tuple[str, list[str]]]:
    """Every noun synset of the WordNet database in ``root``: wnid -> (its first lemma, the wnids
    of its hypernyms and instance hypernyms)."""
    return {wnid: (synset.name, sorted(synset.hypernyms + synset.instance_of))
            for wnid, synset in read_synsets(root).items()}


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
