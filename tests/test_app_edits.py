"""Curation from the pages when something else has the log: a damaged log or one another program
holds is said, naming the file, and nothing saved in it is lost; a group move to a cluster another
session merged away meanwhile is refused."""
from __future__ import annotations

import sqlite3
from contextlib import closing

import numpy as np

from scan_core.explore import curation
from scan_core.explore.curation import DB_NAME, Curation
from ui import detail

from apptest import PAGES, app, button, result_probs


def errors(at) -> list[str]:
    """The page's error messages as read (Markdown's escapes dropped)."""
    return [e.value.replace("\\", "") for e in at.error]


def test_a_damaged_curation_log_is_said_on_every_page_and_left_as_it_was(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    for leftover in run_dir.glob(f"{DB_NAME}*"):
        leftover.unlink()
    log = run_dir / DB_NAME
    log.write_bytes(b"no sqlite here " * 200)
    for page in PAGES[:-1]:  # every page that shows the curation
        at = app(own_home, monkeypatch, page=page)
        assert not at.exception, page
        assert [f"The curation log {log} is damaged or no curation log (file is not a database). Nothing saved in "
                "it was changed or lost; move it aside to start a new log, or put back a copy of it."] == errors(at), page
    assert log.read_bytes() == b"no sqlite here " * 200


def test_a_curation_log_another_program_holds_is_said_and_the_saved_edits_stay(own_home, monkeypatch):
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    first = store.move([3], 0, "tester")
    monkeypatch.setattr(curation, "BUSY_TIMEOUT_MS", 200)
    with closing(sqlite3.connect(store.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another program writing, and not letting go
        at = app(own_home, monkeypatch, page="curate_export")  # opening the log writes to it: it waits, then says so
        held = (f"The curation log {store.path} is held by another program (database is locked). Nothing saved in it "
                "was changed or lost; try again when it lets go of the file.")
        assert errors(at) == [held]
        other.execute("ROLLBACK")
        at = app(own_home, monkeypatch, page="curate_export")  # let go: the page opens the log
        assert not at.error
        other.execute("BEGIN IMMEDIATE")  # and holds it again before the user's next click
        button(at, "Undo this edit").click().run()
        assert not at.exception and errors(at) == [f"Not saved: {held}"]
        other.execute("ROLLBACK")
    assert [(e["id"], e["undone"]) for e in store.history()] == [(first, False)]
    assert store.state().clusters[3] == 0


def test_a_group_move_to_a_cluster_merged_away_meanwhile_is_refused(own_home, monkeypatch):
    """Two thumbnails picked on Clusters, "Move them to cluster" 5: another session merges cluster 5
    into 6 after this page read the clusters to find 5 and before the move is written. The move is
    refused (it names the merge) and the images stay where the user saw them."""
    run_dir = own_home / "runs" / "digits"
    store = Curation(run_dir, result_probs(run_dir).argmax(1))
    picks = np.flatnonzero(store.state().clusters == 0)[:2]
    at = app(own_home, monkeypatch, page="clusters")
    at.session_state["gallery_clicks"] = {"picked": {"ops": [[int(i), True] for i in picks]}}
    at.run()
    at.session_state["gallery_clicks"] = {}
    assert any("**2 images picked**" in m.value for m in at.markdown)
    found = detail.typed_cluster

    def meanwhile(state, text):
        cluster = found(state, text)
        store.merge(5, 6, "alice")
        return cluster

    monkeypatch.setattr(detail, "typed_cluster", meanwhile)
    next(t for t in at.text_input if t.label == "Move them to cluster").set_value("5")
    button(at, "Move").click().run()
    merge = store.history(limit=1)[0]
    assert not at.exception and merge["kind"] == "merge"
    assert errors(at) == [f"Not done: cluster 5 no longer exists: edit #{merge['id']} by alice (merge) changed it "
                          "after you looked"]
    assert (store.state().clusters[picks] == 0).all() and len(store.history()) == 1
