"""Cluster names zero-shot with CLIP over WordNet's nouns: the vocabulary file against WordNet, the
scoring and the lift on hand-made embeddings (shares worked by hand), the text embeddings' cache,
and a CLIP run's names with and without its text tower on the machine."""
from __future__ import annotations

import gzip
import json
import math
import os

import numpy as np
import pytest
from test_names import named_run, names_cli

from scan_core.method.naming import VOCABULARY_FILE, class_mass, suggest_names, wordnet_taxonomy
from scan_core.method.zero_shot import TEMPLATES, TextEmbeddings, ZeroShotProbs, prompt_labels, text_cache_path
from scan_core.pretrained import open_clip_weights, pretrained_spec

TABBY, PERSIAN, TRUCK = "n02123045", "n02123394", "n04467665"  # tabby cat, Persian cat, trailer truck (WordNet 3.0)


def output(wnid: str) -> int:
    taxonomy = wordnet_taxonomy()
    [index] = np.flatnonzero(taxonomy.classes == taxonomy.index(wnid))
    return int(index)


def test_the_vocabulary_file_is_what_wordnet_base_gives():
    from scan_core.method.imagenet_wordnet import WORDNET_DIR
    from scan_core.method.wordnet_nouns import build_vocabulary
    if not (WORDNET_DIR / "data.noun").exists():
        pytest.skip("Debian's wordnet-base is not installed")
    assert json.loads(gzip.decompress(VOCABULARY_FILE.read_bytes())) == build_vocabulary()
    taxonomy = wordnet_taxonomy()
    names = {taxonomy.names[s] for s in taxonomy.classes}
    assert 2000 <= taxonomy.num_classes <= 20000 and VOCABULARY_FILE.stat().st_size < 200_000
    # tabby -> domestic cat -> cat -> feline -> carnivore -> ... -> mammal -> animal (WordNet 3.0 by hand)
    ancestors = {taxonomy.names[s] for s in taxonomy.ancestors(taxonomy.index(TABBY))}
    assert {"domestic cat", "cat", "feline", "carnivore", "mammal", "animal", "entity"} <= ancestors
    # common physical nouns are in; processes, kinds of person, pictures and the too general are not
    assert {"dog", "bicycle", "apple", "tree", "house", "person", "water", "tabby"} <= names
    assert not {"breathing", "terrorist", "drawing", "photograph", "object", "artifact", "entity"} & names
    labels = prompt_labels(taxonomy)  # a name two nouns share is told apart by the nearest hypernym
    assert labels[output("n02012849")] == "crane, a kind of wading bird"
    assert labels[output("n03126707")] == "crane, a kind of lifting device"
    assert labels[output(TABBY)] == "tabby"


def hand_made_text(dim: int = 8) -> tuple[TextEmbeddings, np.ndarray]:
    """Text vectors: tabby, Persian cat and trailer truck the first three axes, every other noun the
    fourth; a random rotation as the projection. Returns it and the projection's inverse."""
    taxonomy = wordnet_taxonomy()
    vectors = np.zeros((taxonomy.num_classes, dim), np.float32)
    vectors[:, 3] = 1
    for axis, wnid in enumerate((TABBY, PERSIAN, TRUCK)):
        vectors[output(wnid)] = np.eye(dim)[axis]
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))
    return TextEmbeddings(vectors, rotation.astype(np.float32), 100.0), rotation.T


def test_zero_shot_probabilities_lift_to_the_right_names():
    taxonomy = wordnet_taxonomy()
    text, inverse = hand_made_text()
    theta = math.pi / 4 - math.asin(math.log(3) / 100 / math.sqrt(2))  # 100 (cos - sin) = ln 3
    joint = np.array([[1, 0, 0], [2 ** -0.5, 2 ** -0.5, 0], [math.sin(theta), 0, math.cos(theta)]])
    joint = np.pad(joint, ((0, 0), (0, 5)))
    features = np.repeat(joint @ inverse * 3.0, 4, axis=0)  # 4 images each, at any scale
    probs = ZeroShotProbs(features, text)
    # by hand: the truck image's logits are 100 cos(theta) and 100 sin(theta), every other noun's 0
    rest = taxonomy.num_classes - 2
    big, small = math.exp(100 * math.cos(theta)), math.exp(100 * math.sin(theta))
    row = probs[8:9][0]
    assert row[output(TRUCK)] == pytest.approx(big / (big + small + rest), rel=1e-5)
    assert row[output(TRUCK)] == pytest.approx(0.75, abs=1e-6) and row[output(TABBY)] == pytest.approx(0.25, abs=1e-6)
    assert probs.shape == (12, taxonomy.num_classes) and np.allclose(probs[0:12].sum(1), 1, atol=1e-5)
    mass = class_mass(probs, np.repeat([0, 1, 2], 4), np.ones(12), 3, batch=5)
    tabby, cats, truck = suggest_names(mass, np.array([4, 4, 4]), taxonomy)
    assert (tabby.name, round(tabby.share, 4)) == ("tabby", 1.0)
    assert (cats.name, round(cats.share, 4)) == ("domestic cat", 1.0)
    assert sorted((name, round(share, 4)) for name, share in cats.evidence[:2]) == [("Persian cat", 0.5), ("tabby", 0.5)]
    assert (truck.name, round(truck.share, 4)) == ("trailer truck", 0.75)
    with pytest.raises(ValueError, match="features must be"):
        ZeroShotProbs(features[:, :4], text)


def test_text_embeddings_average_the_prompts_and_are_kept(tmp_path, monkeypatch):
    seen: list[str] = []

    def encode(prompts: list[str]) -> np.ndarray:  # the photo prompt along x, the drawing one along 2y
        seen.extend(prompts)
        return np.array([[1.0, 0, 0] if p.startswith("a photo") else [0, 2.0, 0] for p in prompts])

    text = TextEmbeddings.from_prompts(["cat", "dog"], encode, np.eye(3), 100.0)
    assert seen == [t.format(label) for label in ("cat", "dog") for t in TEMPLATES]
    assert np.allclose(text.vectors, [[0.5 ** 0.5, 0.5 ** 0.5, 0]] * 2)
    monkeypatch.setenv("SCAN_EXPLORER_CACHE", str(tmp_path))
    path = text.save(text_cache_path("clip-vitb16"))
    assert path.parent == tmp_path / "clip_text" and path.name.startswith("clip-vitb16-")
    loaded = TextEmbeddings.load(path, 2)
    assert loaded is not None and np.array_equal(loaded.vectors, text.vectors) and loaded.logit_scale == 100.0
    assert TextEmbeddings.load(path, 3) is None and TextEmbeddings.load(tmp_path / "none.npz", 2) is None


def clip_run(tmp_path):
    """A synthetic CLIP run whose clusters' features point at tabby, the two cats and the truck."""
    run = named_run(tmp_path / "clip", backbone="clip-vitb16")
    clusters = np.load(run / "scan_probs.npy").argmax(1)
    _, inverse = hand_made_text()
    joint = np.pad(np.array([[1, 0, 0], [2 ** -0.5, 2 ** -0.5, 0], [0, 0, 1], [0, 0, 1]]), ((0, 0), (0, 5)))
    np.save(run / "features.npy", (joint @ inverse)[clusters].astype(np.float32))
    return run, clusters


def test_a_clip_run_is_named_zero_shot_once_its_text_embeddings_are_here(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAN_EXPLORER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # no CLIP weights here
    monkeypatch.delenv("SCAN_EXPLORER_WEIGHTS", raising=False)
    run, clusters = clip_run(tmp_path)
    missing = names_cli(str(run))  # no text tower: which backbone and files would name it
    assert missing.returncode == 2 and "open_clip" in missing.stderr and "clip-vitb16" in missing.stderr
    assert "open_clip_model.safetensors" in missing.stderr
    hand_made_text()[0].save(text_cache_path("clip-vitb16"))
    done = names_cli(str(run), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    sizes = np.bincount(clusters, minlength=4)
    # clusters 2 and 3 are both trucks: nothing under trailer truck tells them apart
    assert [(r["name"], r["size"]) for r in rows] == [("tabby", sizes[0]), ("domestic cat", sizes[1]),
                                                      (None, sizes[2]), (None, sizes[3])]
    assert "trailer truck, as cluster" in rows[2]["why"]


@pytest.mark.skipif(open_clip_weights(pretrained_spec("clip-vitb16")) is None,
                    reason="open_clip or CLIP ViT-B/16's open_clip weights are not on this machine")
def test_clip_text_tower_puts_the_cats_together(tmp_path):
    from scan_core.engine.naming import record_clip_text
    text = TextEmbeddings.load(record_clip_text(pretrained_spec("clip-vitb16"), cache_dir=tmp_path),
                               wordnet_taxonomy().num_classes)
    assert text is not None and text.projection.shape == (768, 512) and text.logit_scale == pytest.approx(100, rel=0.01)
    tabby, persian, truck = (text.vectors[output(w)] for w in (TABBY, PERSIAN, TRUCK))
    assert tabby @ persian > tabby @ truck and os.path.exists(tmp_path / "clip_text")
