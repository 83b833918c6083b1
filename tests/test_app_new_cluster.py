"""A new cluster from the user's images in the app: from the map's selection, a gallery's picked
thumbnails, the detail view, and a split of the shown cluster by the picked members; a name another
cluster has refused with a message (AppTest, on the ``own_home`` digits run)."""
from __future__ import annotations

import numpy as np
from test_app import detail_of_cluster_0, members_by_confidence

from scan_core.explore.curation import Curation
from scan_core.explore.export import curated_table
from scan_core.explore.results import RunResults

from apptest import app, button, result_probs, texts


def store_of(run_dir) -> Curation:
    return Curation(run_dir, result_probs(run_dir).argmax(1))


def pick(at, ops) -> None:
    """Ctrl-click thumbnails: ``ops`` ``[(index, picked), ...]``, sent at once as the page's click
    listener sends them."""
    at.session_state["gallery_clicks"] = {"picked": {"ops": [[int(i), bool(on)] for i, on in ops]}}
    at.run()
    at.session_state["gallery_clicks"] = {}


def test_a_map_selection_from_several_clusters_becomes_a_named_cluster_on_every_page_and_in_the_export(
        own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    clusters = result_probs(run_dir).argmax(1)
    chosen = sorted([*np.flatnonzero(clusters == 2)[:3].tolist(), *np.flatnonzero(clusters == 7)[:2].tolist()])
    at = app(own_home, monkeypatch, page="embedding")
    at.session_state["who"] = "tester"
    at.session_state["selection"] = {"run": str(run_dir), "ids": np.array(chosen)}
    at.run()
    at.text_input(key="embedding_new_cluster_name").set_value("people")
    button(at, "New cluster from selection").click().run()
    assert not at.exception
    store = store_of(run_dir)
    edit = store.history(1)[0]
    assert (edit["kind"], edit["who"], edit["payload"]["images"].tolist()) == ("new_cluster", "tester", chosen)
    state = store.state()
    assert state.members(10).tolist() == chosen and state.names[10] == "people"  # K = 10: ids 0-9 were taken
    assert sorted(state.reviewed) == chosen
    at.switch_page("pages/clusters.py").run()
    assert "10 · people" in at.selectbox(key="cluster").options
    results = RunResults.load(run_dir)
    table = curated_table(results.images, results.probs, state)
    assert table.loc[chosen, "cluster"].tolist() == [10] * 5 and set(table.loc[chosen, "curated_label"]) == {"people"}
    assert (table["curated_label"] == "people").sum() == 5


def test_picked_thumbnails_become_a_new_cluster_and_the_picks_are_cleared(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    members = members_by_confidence(run_dir, 0)
    at = app(own_home, monkeypatch, page="clusters")
    pick(at, [(i, True) for i in members[:3]])
    assert "**3 images picked**" in texts(at)
    button(at, "New cluster from them").click().run()
    assert not at.exception and "picked**" not in texts(at)
    state = store_of(run_dir).state()
    assert state.members(10).tolist() == sorted(members[:3].tolist()) and 10 not in state.names


def test_the_detail_view_makes_a_new_cluster_of_its_image(own_home, monkeypatch):
    at, run_dir, _, members = detail_of_cluster_0(own_home, monkeypatch)
    button(at, "New cluster from this image").click().run()
    assert not at.exception
    store = store_of(run_dir)
    assert store.history(1)[0]["kind"] == "new_cluster" and store.state().members(10).tolist() == [int(members[0])]


def test_the_clusters_page_splits_the_shown_cluster_by_the_picked_members(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    members = members_by_confidence(run_dir, 0)
    other = members_by_confidence(run_dir, 1)[0]
    at = app(own_home, monkeypatch, page="clusters")
    pick(at, [(members[0], True), (other, True)])            # one is not in cluster 0: no split offered
    assert not any(b.label.startswith("Split by selection") for b in at.button)
    assert "all lie in this cluster" in texts(at)
    pick(at, [(other, False), (members[4], True)])           # unpick it, pick another member
    at.text_input(key="split_selection_0_name").set_value("bold zeros")
    button(at, "Split by selection (2 picked)").click().run()
    assert not at.exception
    state = store_of(run_dir).state()
    assert state.members(10).tolist() == sorted([int(members[0]), int(members[4])])
    assert len(state.members(0)) == len(members) - 2 and state.names[10] == "bold zeros"
    assert at.selectbox(key="cluster").value == 10             # the new cluster is shown next


def test_a_name_another_cluster_has_is_refused_with_a_message(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    store_of(run_dir).name_cluster(0, "food")
    at = app(own_home, monkeypatch, page="clusters")
    at.selectbox(key="cluster").set_value(1).run()
    at.text_input(key="name_1").set_value("food")
    button(at, "Save name").click().run()
    assert not at.exception
    assert any("Not done: cluster 0 is already named 'food'" in e.value for e in at.error)
    assert store_of(run_dir).state().names == {0: "food"}
