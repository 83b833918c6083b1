"""Suggested cluster names in the app (AppTest): Clusters shows a cluster's suggestion with its
evidence and "Use this name" names it; "Accept all confident suggestions" is one edit that skips
the clusters the user named, and one undo takes it back; the names reach the export and the map's
labels; Curate & export's Name clusters table has the suggestions; a run whose backbone has no
classifier says which backbone names need. The run is synthetic, with the class scores of
``test_names.CLUSTER_CLASSES``: cluster 0 tabby / tiger cat / Persian cat, 1 ambulance / sports car,
2 tabby / trailer truck (no concept covers 60%), 3 mostly comic book (a medium)."""
from __future__ import annotations

import numpy as np
import pytest
from test_names import named_run

from scan_core.explore.curation import Curation
from scan_core.explore.export import curated_table
from scan_core.explore.results import RunResults
from scan_core.explore.workspace import Workspace

from apptest import app, button, texts


@pytest.fixture
def named_home(tmp_path):
    """A workspace with ``named`` (an EfficientNet-Lite0 run with class scores) and ``dino`` (a
    DINOv2 run: no classifier)."""
    ws = Workspace.create(tmp_path / "home")
    named_run(ws.runs / "named")
    named_run(ws.runs / "dino", backbone="dinov2-vits14")
    return ws.home


def store_of(run_dir) -> Curation:
    return Curation(run_dir, np.load(run_dir / "scan_probs.npy").argmax(1))


def plain(text: str) -> str:
    """Text as shown: Markdown's escapes removed."""
    return text.replace("\\", "")


def test_the_clusters_page_shows_a_suggestion_and_one_click_names_the_cluster(named_home, monkeypatch):
    run_dir = named_home / "runs" / "named"
    at = app(named_home, monkeypatch, run="named", page="clusters")
    at.session_state["who"] = "tester"
    at.run()
    assert at.selectbox(key="cluster").value == 0
    # every member of cluster 0 has tabby 0.5, tiger cat 0.3, Persian cat 0.2, all under domestic cat
    assert "Suggested name: domestic cat — 100%: tabby 50%, tiger cat 30%, Persian cat 20%" in plain(texts(at))
    button(at, "Use this name").click().run()
    assert not at.exception
    edit = store_of(run_dir).history(1)[0]
    assert (edit["kind"], edit["who"], edit["payload"]) == ("name_cluster", "tester",
                                                            {"cluster": 0, "name": "domestic cat"})
    assert "0 · domestic cat" in at.selectbox(key="cluster").options
    assert at.text_input(key="name_0").value == "domestic cat"  # the name box shows it too
    assert "In use" in texts(at) and not any(b.label == "Use this name" for b in at.button)
    # a cluster whose classes split between cats and trucks gets none, said plainly
    at.selectbox(key="cluster").set_value(2).run()
    assert "Suggested name: no confident name (no concept covers 60%" in plain(texts(at))
    assert not any(b.label == "Use this name" for b in at.button)


def test_accept_all_is_one_edit_that_keeps_the_users_names_and_one_undo_reverts_it(named_home, monkeypatch):
    run_dir = named_home / "runs" / "named"
    store_of(run_dir).name_cluster(1, "vans", "ann")  # the user's name stays
    at = app(named_home, monkeypatch, run="named", page="clusters")
    at.session_state["who"] = "tester"
    at.run()
    assert "2 of 4 clusters have a confident one; 1 of them wait for a name" in plain(texts(at))
    button(at, "Accept all confident suggestions (1)").click().run()
    assert not at.exception
    store = store_of(run_dir)
    edits = store.history()
    assert [e["kind"] for e in edits] == ["name_clusters", "name_cluster"]
    assert edits[0]["payload"] == {"names": [[0, "domestic cat"]]} and edits[0]["who"] == "tester"
    state = store.state()
    assert state.names == {0: "domestic cat", 1: "vans"}
    assert button(at, "Accept all confident suggestions (0)").disabled
    # the export and the map's cluster labels carry the name
    results = RunResults.load(run_dir)
    clusters = np.load(run_dir / "scan_probs.npy").argmax(1)
    table = curated_table(results.images, results.probs, state)
    assert set(table.loc[clusters == 0, "curated_label"]) == {"domestic cat"}
    assert set(table.loc[clusters == 1, "curated_label"]) == {"vans"}
    from ui.map_figure import group_codes
    codes, names = group_codes(results, state, "cluster")
    assert names[0] == "0 · domestic cat" and names[1] == "1 · vans" and (codes == clusters).all()
    # one undo (Curate & export's History) takes the whole edit back
    at.switch_page("pages/curate_export.py").run()
    button(at, "Undo my last edit").click().run()
    assert not at.exception
    assert store_of(run_dir).state().names == {1: "vans"}
    assert store_of(run_dir).history()[0]["undone"]


def test_the_name_clusters_table_has_the_suggestions_and_accepts_them(named_home, monkeypatch):
    run_dir = named_home / "runs" / "named"
    at = app(named_home, monkeypatch, run="named", page="curate_export")
    at.session_state["who"] = "tester"
    at.run()
    [table] = [frame.value for frame in at.dataframe if "suggestion" in frame.value.columns]
    suggestions = dict(zip(table["cluster"], table["suggestion"]))
    assert suggestions[0] == "domestic cat — 100%: tabby 50%, tiger cat 30%, Persian cat 20%"
    assert suggestions[1] == "car — 100%: ambulance 50%, sports car 50%"
    assert suggestions[2].startswith("no confident name (no concept covers 60%")
    assert suggestions[3].startswith("no confident name (the classifier sees the picture's medium or style")
    button(at, "Accept all confident suggestions (2)").click().run()
    assert not at.exception
    store = store_of(run_dir)
    assert [e["kind"] for e in store.history()] == ["name_clusters"]
    assert store.state().names == {0: "domestic cat", 1: "car"}


def test_a_run_without_a_classifier_says_which_backbone_names_need(named_home, monkeypatch):
    for page in ("clusters", "curate_export"):
        at = app(named_home, monkeypatch, run="dino", page=page)
        shown = plain(texts(at))
        assert "No suggested names: names need a frozen pretrained backbone with an ImageNet classifier" in shown
        assert "efficientnet-lite0-imagenet" in shown and "this run has the dinov2-vits14 backbone" in shown
        assert not any(b.label.startswith("Accept all") or b.label == "Use this name" for b in at.button)
