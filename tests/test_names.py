"""Cluster names from the backbone's ImageNet classifier: the WordNet lift on hand-made class
distributions, the uniqueness rule, the class scores recorded in the backbone's pass, the curation
edit naming several clusters and its undo, and the ``names`` command."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scan_core.config import RunConfig
from scan_core.data.artifacts import save_array, save_json
from scan_core.explore.curation import Curation
from scan_core.method.naming import HIERARCHY_FILE, class_mass, imagenet_taxonomy, suggest_names

ROOT = Path(__file__).resolve().parents[1]


def distribution(**shares: float) -> np.ndarray:
    """A (1000,) class distribution with the named classes' shares (underscores for spaces)."""
    taxonomy = imagenet_taxonomy()
    row = np.zeros(taxonomy.num_classes)
    for name, share in shares.items():
        row[taxonomy.class_index(name.replace("_", " "))] = share
    return row


def names_of(*rows: np.ndarray) -> list:
    return suggest_names(np.stack(rows), np.full(len(rows), 10))


def test_a_cluster_of_house_cats_is_named_after_the_concept_above_them():
    # WordNet 3.0 by hand: tabby, tiger cat and Persian cat are hyponyms of domestic cat (under cat)
    [named] = names_of(distribution(tabby=0.4, tiger_cat=0.3, Persian_cat=0.2, goldfish=0.1))
    assert (named.name, round(named.share, 6)) == ("domestic cat", 0.9)
    assert named.evidence == (("tabby", 0.4), ("tiger cat", 0.3), ("Persian cat", 0.2))
    assert named.text() == "domestic cat — 90%: tabby 40%, tiger cat 30%, Persian cat 20%"
    # lynx and cougar are wildcats (0.5, short of 0.6), domestic cat holds 0.4: cat covers 0.9
    [named] = names_of(distribution(tabby=0.4, lynx=0.25, cougar=0.25, goldfish=0.1))
    assert (named.name, round(named.share, 6)) == ("cat", 0.9)


def test_a_cluster_split_between_cats_and_trucks_gets_no_name():
    # the two meet at "whole" (an organism and an artifact): nothing below it covers 0.6
    [split] = names_of(distribution(tabby=0.45, trailer_truck=0.45, goldfish=0.1))
    assert split.name is None and "no concept covers 60%" in split.why
    assert split.text().startswith("no confident name")


def test_a_cluster_of_one_picture_medium_gets_no_name():
    [comic] = names_of(distribution(comic_book=0.5, tabby=0.5))  # its top class is a medium
    [web] = names_of(distribution(tabby=0.65, web_site=0.35))  # a medium holds a third of it
    assert comic.name is None and web.name is None and "medium or style" in web.why
    # a medium's mass never counts towards a name: 0.55 of cars is short of 0.6 without the envelope
    [cars] = names_of(distribution(ambulance=0.3, sports_car=0.25, envelope=0.2, tabby=0.25))
    assert cars.name is None


def test_two_clusters_never_get_the_same_name():
    # each is 0.9 domestic cat, no class alone reaching 0.6: the class that sets each apart names it
    tabbies = distribution(tabby=0.55, Persian_cat=0.35, goldfish=0.1)
    persians = distribution(Persian_cat=0.55, tabby=0.35, goldfish=0.1)
    first, second, cars = names_of(tabbies, persians, distribution(ambulance=0.5, sports_car=0.5))
    assert (first.name, second.name, cars.name) == ("domestic cat (tabby)", "domestic cat (Persian cat)", "car")
    assert first.evidence == (("tabby", 0.55),) and round(first.share, 6) == 0.9
    # nothing tells two equal clusters apart: neither is named
    twin, other = names_of(tabbies, tabbies)
    assert twin.name is None and other.name is None and "nothing tells them apart" in twin.why


def test_class_mass_weights_members_by_their_confidence():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), 50).astype(np.float16)
    clusters, weights = rng.integers(0, 3, 50), rng.random(50)
    expected = np.zeros((4, 6))
    for i in range(50):
        expected[clusters[i]] += weights[i] * probs[i].astype(np.float64)
    assert np.allclose(class_mass(probs, clusters, weights, 4, batch=7), expected)
    with pytest.raises(ValueError, match="cluster ids"):
        class_mass(probs, clusters + 3, weights, 4)


def test_the_hierarchy_file_is_what_wordnet_base_gives():
    from scan_core.method.imagenet_wordnet import WORDNET_DIR, build_hierarchy
    if not (WORDNET_DIR / "data.noun").exists():
        pytest.skip("Debian's wordnet-base is not installed")
    assert json.loads(HIERARCHY_FILE.read_text()) == build_hierarchy()
    taxonomy = imagenet_taxonomy()
    tabby = taxonomy.classes[taxonomy.class_index("tabby")]
    ancestors = {taxonomy.names[s] for s in taxonomy.ancestors(tabby)}
    assert {"domestic cat", "cat", "feline", "carnivore", "mammal", "animal", "entity"} <= ancestors
    assert "big cat" not in ancestors and taxonomy.num_classes == 1000


def test_the_backbone_pass_records_its_classifier_probabilities():
    torch = pytest.importorskip("torch")
    from scan_core.method.backbones import build_backbone, recording_class_probs
    from scan_core.method.pretext import embed
    backbone = build_backbone("efficientnet-lite0-imagenet", 3, input_size=64).eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    recorded = np.zeros((5, 1000), np.float32)
    with recording_class_probs(backbone, recorded):
        features = embed(backbone, images, "cpu", batch_size=2)
    # the package's own forward (features, pooling, dropout, classifier) on the same inputs
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        reference = torch.softmax(backbone.net((x - 0.5) / 0.5), 1).numpy()
    assert features.shape == (5, 1280)
    assert np.allclose(recorded, reference, atol=1e-5) and np.allclose(recorded.sum(1), 1, atol=1e-4)


def test_naming_several_clusters_is_one_edit_with_one_undo(tmp_path):
    curation = Curation(tmp_path, np.array([0, 0, 1, 1, 2, 2]))
    curation.name_cluster(2, "mine")
    edit = curation.name_clusters({0: "cat", 1: "car"}, who="ann")
    assert curation.state().names == {0: "cat", 1: "car", 2: "mine"}
    assert curation.history()[0]["id"] == edit and curation.history()[0]["kind"] == "name_clusters"
    assert Curation(tmp_path, np.array([0, 0, 1, 1, 2, 2])).state().names == {0: "cat", 1: "car", 2: "mine"}  # replayed
    curation.undo()
    assert curation.state().names == {2: "mine"}
    with pytest.raises(ValueError, match="already named 'mine'"):
        curation.name_clusters({0: "mine"})
    with pytest.raises(ValueError, match="one name for two clusters"):
        curation.name_clusters({0: "cat", 1: "cat"})
    with pytest.raises(ValueError, match="does not exist|no cluster"):
        curation.name_clusters({7: "dog"})


# ---- the names command on a run whose class scores are known ---------------------------------------
CLUSTER_CLASSES = ({"tabby": 0.5, "tiger cat": 0.3, "Persian cat": 0.2}, {"ambulance": 0.5, "sports car": 0.5},
                   {"tabby": 0.5, "trailer truck": 0.5}, {"comic book": 0.7, "tabby": 0.3})


def named_run(run_dir: Path, backbone: str = "efficientnet-lite0-imagenet") -> Path:
    """A synthetic finished run (bench/synthetic_run.py) of 4 clusters whose images' class scores
    are those of CLUSTER_CLASSES, as a frozen ``backbone`` would have recorded them."""
    spec = importlib.util.spec_from_file_location("synthetic_run", ROOT / "bench" / "synthetic_run.py")
    synthetic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synthetic)
    synthetic.write_run(run_dir, 200, clusters=4)
    stored = json.loads((run_dir / "config.json").read_text())
    config = RunConfig.from_dict({**stored, "backbone": backbone, "pretext": {**stored["pretext"], "epochs": 0}})
    save_json(run_dir / "config.json", config.to_dict())
    clusters = np.load(run_dir / "scan_probs.npy").argmax(1)
    table = np.stack([distribution(**{k.replace(" ", "_"): v for k, v in shares.items()}) for shares in CLUSTER_CLASSES])
    save_array(run_dir / "class_probs.npy", table[clusters].astype(np.float16))
    return run_dir


def names_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scan_core", "names", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_the_names_command_prints_accepts_and_keeps_the_users_names(tmp_path):
    run = named_run(tmp_path / "run")
    clusters = np.load(run / "scan_probs.npy").argmax(1)
    sizes = np.bincount(clusters, minlength=4)
    done = names_cli(str(run), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["cluster"], r["name"], r["size"]) for r in rows] == [
        (0, "domestic cat", sizes[0]), (1, "car", sizes[1]), (2, None, sizes[2]), (3, None, sizes[3])]
    assert rows[0]["share"] == pytest.approx(1.0, abs=1e-3)
    assert [e["class"] for e in rows[0]["evidence"]] == ["tabby", "tiger cat", "Persian cat"]
    table = names_cli(str(run))
    assert table.returncode == 0 and "domestic cat" in table.stdout and "(no confident name)" in table.stdout
    Curation(run, clusters).name_cluster(1, "vans")  # the user's name stays
    accepted = names_cli(str(run), "--accept")
    assert accepted.returncode == 0, accepted.stderr
    state = Curation(run, clusters).state()
    assert state.names == {0: "domestic cat", 1: "vans"}
    assert [h["kind"] for h in Curation(run, clusters).history()] == ["name_clusters", "name_cluster"]


def test_the_names_command_refuses_runs_without_a_classifier(tmp_path):
    run = named_run(tmp_path / "dino", backbone="dinov2-vits14")
    done = names_cli(str(run))
    assert done.returncode == 2 and done.stdout == ""
    assert "efficientnet-lite0-imagenet" in done.stderr and "dinov2-vits14" in done.stderr
    missing = names_cli(str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "error:" in missing.stderr
