"""Curation log: each edit kind, label precedence, undo, validation, concurrent writers, SIGKILL."""
import json
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from scan_core.explore import curation
from scan_core.explore.curation import DB_NAME, Curation, LogUnusable, StaleEdit, split_in_two

REPO = Path(__file__).resolve().parents[1]
BASE = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])


@pytest.fixture
def cur(tmp_path):
    return Curation(tmp_path, BASE, [f"img{i}" for i in range(len(BASE))])


def plain(payload: dict) -> dict:
    """An edit's payload with its image arrays as lists."""
    return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in payload.items()}


def test_fresh_state_is_the_model_assignment(cur):
    state = cur.state()
    assert np.array_equal(state.clusters, BASE) and not state.clusters.flags.writeable
    assert state.names == {} and state.overrides == {} and state.outliers == frozenset()
    assert state.num_cluster_ids == 3
    assert state.cluster_sizes().tolist() == [3, 3, 4]
    assert state.labels().tolist() == ["cluster 0"] * 3 + ["cluster 1"] * 3 + ["cluster 2"] * 4
    assert cur.history() == [] and cur.undo() is None
    assert (cur.path.parent / DB_NAME).exists()


def test_label_precedence_override_then_name_then_id(cur):
    cur.name_cluster(1, "  cat ")  # stripped
    cur.relabel([4, 5], "dog")
    labels = cur.state().labels()
    assert labels[3] == "cat" and labels[4] == "dog" and labels[5] == "dog" and labels[0] == "cluster 0"
    cur.name_cluster(1, "kitten")  # the latest name wins
    cur.clear_label([5])
    state = cur.state()
    assert state.names == {1: "kitten"} and state.overrides == {4: "dog"}
    assert state.labels()[3:6].tolist() == ["kitten", "dog", "kitten"]


def test_labels_keep_long_overrides_whole(cur):
    cur.relabel([0], "a much longer label than any cluster name")
    assert cur.state().labels()[0] == "a much longer label than any cluster name"


def test_move_changes_clusters_and_sizes(cur):
    edit = cur.move(np.array([0, 1]), 2, who="alice")
    state = cur.state()
    assert state.clusters.tolist() == [2, 2, 0, 1, 1, 1, 2, 2, 2, 2]
    assert state.cluster_sizes().tolist() == [1, 3, 6]
    last = cur.history()[0]
    assert (last["id"], last["kind"], last["who"], plain(last["payload"]), last["undone"]) == \
           (edit, "move", "alice", {"images": [0, 1], "cluster": 2}, False)
    with pytest.raises(ValueError, match="cluster 3 does not exist"):
        cur.move([0], 3)


def test_accepted_and_moved_images_are_reviewed_until_undone(cur):
    assert cur.state().reviewed == frozenset()
    cur.accept([3, 4], 1, who="alice")
    cur.move([0], 2, who="bob")
    cur.merge(1, 2)  # a merge moves images the user never looked at one by one: not reviewed
    state = cur.state()
    assert state.reviewed == frozenset({0, 3, 4}) and state.clusters.tolist() == [2, 0, 0, 2, 2, 2, 2, 2, 2, 2]
    assert cur.undo(who="bob")["kind"] == "move" and cur.state().reviewed == frozenset({3, 4})
    assert cur.undo(who="alice")["kind"] == "accept" and cur.state().reviewed == frozenset()


def test_accepting_images_another_session_moved_is_refused(cur):
    cur.move([3], 0, who="alice")  # bob's page still shows image 3 in cluster 1
    with pytest.raises(StaleEdit, match=r"images \[3\] are no longer in the clusters you saw"):
        cur.accept([3, 4], 1, who="bob")
    assert cur.history(1)[0]["kind"] == "move" and cur.state().reviewed == frozenset({3})
    cur.accept([6, 0], [2, 0], who="bob")  # one cluster per image, in the order given
    assert plain(cur.history(1)[0]["payload"]) == {"images": [0, 6], "clusters": [0, 2]}
    with pytest.raises(ValueError, match="one id or one per image"):
        cur.accept([1, 2], [0, 0, 0])


def test_outliers_flag_and_unflag(cur):
    cur.mark_outliers([1, 2, 7])
    cur.mark_outliers([2], outlier=False)
    assert cur.state().outliers == frozenset({1, 7})


def test_merge_empties_the_source_which_still_exists(cur):
    cur.merge(0, 1)
    state = cur.state()
    assert state.clusters.tolist() == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    assert state.cluster_sizes().tolist() == [0, 6, 4] and state.num_cluster_ids == 3
    with pytest.raises(ValueError, match="cluster 0 is empty"):
        cur.merge(0, 2)
    cur.move([9], 0)  # an emptied cluster can take images again
    assert cur.state().members(0).tolist() == [9]


def test_merge_only_moves_current_members(cur):
    cur.move([6], 0)
    cur.merge(0, 1)
    cur.move([0], 0)
    assert cur.state().clusters.tolist() == [0, 1, 1, 1, 1, 1, 1, 2, 2, 2]


def test_split_gets_fresh_cluster_ids(cur):
    assert cur.split(2, [8, 9]) == 3
    assert cur.split(1, [3]) == 4
    state = cur.state()
    assert state.members(3).tolist() == [8, 9] and state.members(4).tolist() == [3]
    assert state.num_cluster_ids == 5 and state.cluster_sizes().tolist() == [3, 2, 2, 2, 1]
    assert plain(cur.history(1)[0]["payload"]) == {"cluster": 1, "images": [3], "new_cluster": 4}
    cur.name_cluster(4, "odd one")
    assert cur.state().labels()[3] == "odd one"


def test_merge_then_split_restores_the_pair(cur):
    cur.name_cluster(1, "animals")
    cur.merge(0, 1)
    new = cur.split(1, [0, 1, 2])
    state = cur.state()
    assert new == 3 and state.members(3).tolist() == [0, 1, 2] and state.members(1).tolist() == [3, 4, 5]
    assert state.members(0).tolist() == []
    assert state.labels()[[0, 3]].tolist() == ["cluster 3", "animals"]


def test_undo_per_user_and_global_replays_the_rest(cur):
    cur.move([0], 1, who="alice")
    bob = cur.name_cluster(2, "birds", who="bob")
    alice_last = cur.relabel([6], "owl", who="alice")
    undone = cur.undo("bob")
    assert undone["id"] == bob and undone["undone"] is True and undone["payload"] == {"cluster": 2, "name": "birds"}
    state = cur.state()
    assert state.names == {} and state.overrides == {6: "owl"} and state.clusters[0] == 1
    assert cur.undo("bob") is None and cur.undo("carol") is None
    assert cur.undo()["id"] == alice_last
    assert cur.undo()["kind"] == "move"
    assert cur.undo() is None
    state = cur.state()
    assert np.array_equal(state.clusters, BASE) and state.overrides == {}
    assert [h["undone"] for h in cur.history()] == [True, True, True]


def test_undo_merge_and_split(cur):
    cur.merge(0, 1)
    new = cur.split(1, [0, 3])
    cur.undo()
    assert cur.state().num_cluster_ids == 3 and cur.state().clusters[0] == 1
    cur.undo()
    assert np.array_equal(cur.state().clusters, BASE)
    assert cur.split(2, [6]) == new  # the undone split's id is free again


def test_edits_after_an_undone_split_still_replay(cur):
    new = cur.split(2, [9], who="alice")
    cur.move([0], new, who="bob")
    cur.undo("alice")
    state = cur.state()  # bob's move still refers to the cluster the split made: it keeps existing
    assert state.clusters[9] == 2 and state.clusters[0] == new and state.num_cluster_ids == new + 1


def test_history_newest_first_with_limit(cur):
    ids = [cur.name_cluster(0, f"n{i}", who=f"u{i}") for i in range(5)]
    assert ids == sorted(ids)
    history = cur.history()
    assert [h["id"] for h in history] == ids[::-1]
    assert [h["who"] for h in cur.history(limit=2)] == ["u4", "u3"]
    assert all(isinstance(h["at"], float) and h["at"] <= time.time() for h in history)
    with pytest.raises(ValueError, match="limit"):
        cur.history(0)


def test_state_survives_a_new_object(tmp_path, cur):
    cur.relabel([2], "kept")
    again = Curation(tmp_path, BASE, [f"img{i}" for i in range(len(BASE))])
    assert again.state().overrides == {2: "kept"}


@pytest.mark.parametrize("call, message", [
    (lambda c: c.relabel([], "x"), "non-empty"),
    (lambda c: c.relabel([10], "x"), r"outside \[0, 10\)"),
    (lambda c: c.relabel([-1], "x"), "outside"),
    (lambda c: c.relabel([0.5], "x"), "integers"),
    (lambda c: c.relabel([[0]], "x"), "1-D"),
    (lambda c: c.relabel([0], "   "), "label must not be empty"),
    (lambda c: c.relabel([0], "x" * 101), "at most 100"),
    (lambda c: c.relabel([0], 5), "label must be a string"),
    (lambda c: c.relabel([0], "x", who=" "), "who must not be empty"),
    (lambda c: c.clear_label([11]), "outside"),
    (lambda c: c.name_cluster(3, "x"), "cluster 3 does not exist"),
    (lambda c: c.name_cluster(-1, "x"), "non-negative"),
    (lambda c: c.name_cluster(True, "x"), "non-negative integer"),
    (lambda c: c.move([0], "1"), "non-negative integer"),
    (lambda c: c.mark_outliers([0], outlier="yes"), "True or False"),
    (lambda c: c.merge(1, 1), "into itself"),
    (lambda c: c.merge(5, 1), "cluster 5 does not exist"),
    (lambda c: c.merge(1, 5), "cluster 5 does not exist"),
    (lambda c: c.split(0, [0, 3]), r"images \[3\] are not in cluster 0"),
    (lambda c: c.split(0, [0, 1, 2]), "must leave images"),
    (lambda c: c.split(7, [0]), "cluster 7 does not exist"),
    (lambda c: c.undo(who=""), "who must not be empty"),
])
def test_invalid_edits_are_refused_and_not_logged(cur, call, message):
    with pytest.raises(ValueError, match=message):
        call(cur)
    assert cur.history() == []


@pytest.mark.parametrize("base, message", [
    (np.array([[0, 1]]), "1-D integer"),
    (np.array([0.0, 1.0]), "1-D integer"),
    (np.array([0, -1]), "non-negative"),
    (np.array([], dtype=int), "empty"),
])
def test_invalid_base_clusters(tmp_path, base, message):
    with pytest.raises(ValueError, match=message):
        Curation(tmp_path, base)


def test_reopening_with_other_images_is_refused(tmp_path, cur):
    with pytest.raises(ValueError, match="curates 10 images, not the 9"):
        Curation(tmp_path, BASE[:9])
    with pytest.raises(ValueError, match="other image ids"):
        Curation(tmp_path, BASE, [f"other{i}" for i in range(10)])
    with pytest.raises(ValueError, match="10 base clusters but 2 image ids"):
        Curation(tmp_path, BASE, ["a", "b"])
    Curation(tmp_path, BASE)  # ids are optional
    with pytest.raises(ValueError, match="does not exist"):
        Curation(tmp_path / "missing", BASE)


# ---- splitting by features ---------------------------------------------------------------------
def test_split_in_two_separates_a_merged_digit_pair(tmp_path):
    digits = load_digits()
    features, labels = digits.data, digits.target
    members = np.flatnonzero((labels == 0) | (labels == 1))
    second = split_in_two(features, members, seed=0)
    assert 0 < len(second) < len(members) and np.isin(second, members).all()
    in_second = np.isin(members, second)
    agreement = (in_second == (labels[members] == 1)).mean()
    assert max(agreement, 1 - agreement) > 0.9
    # merge the two classes' clusters in a curation, then split them back apart
    cur = Curation(tmp_path, labels)
    cur.merge(0, 1)
    new = cur.split(1, second)
    state = cur.state()
    assert new == 10 and np.array_equal(state.members(new), second)
    assert len(state.members(1)) == len(members) - len(second)


def test_split_in_two_refusals():
    features = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="at least 2 members"):
        split_in_two(features, np.array([1, 1]))
    with pytest.raises(ValueError, match=r"indices in \[0, 5\)"):
        split_in_two(features, np.array([0, 5]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        split_in_two(features[0], np.array([0, 1]))
    with pytest.raises(ValueError, match="do not separate"):
        split_in_two(np.ones((4, 3)), np.arange(4))


# ---- several processes, and a SIGKILL ----------------------------------------------------------
WORKER = """
import os, random, sys, time
import numpy as np
from scan_core.explore.curation import Curation
run_dir, name = sys.argv[1], sys.argv[2]
cur = Curation(run_dir, np.repeat(np.arange(2), 50))
open(os.path.join(run_dir, "ready-" + name), "w").close()
while not os.path.exists(os.path.join(run_dir, "go")):
    time.sleep(0.01)
mine = 0 if name == "w0" else 1
for i in range(200):
    if i % 40 == 0:
        cur.split(mine, [mine * 50 + i // 40], who=name)
    else:
        cur.relabel([i % 100], f"{name}-{i}", who=name)
    time.sleep(random.random() * 0.01)  # clicks, not a tight loop: sqlite's lock is not fair
"""


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), name], cwd=REPO,
                                stderr=subprocess.PIPE, text=True) for name in ("w0", "w1")]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready-{name}").exists() for name in ("w0", "w1")):
        assert time.time() < deadline, "a writer did not start within 120 s"
        for worker in workers:
            assert worker.poll() is None, f"a writer failed to start: {worker.stderr.read()}"
        time.sleep(0.01)
    (tmp_path / "go").touch()  # both start writing together
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read()
    cur = Curation(tmp_path, np.repeat(np.arange(2), 50))
    history = cur.history(limit=1000)[::-1]
    assert len(history) == 400 and len({h["id"] for h in history}) == 400
    for name in ("w0", "w1"):
        mine = [h for h in history if h["who"] == name]
        assert len(mine) == 200
        assert [h["payload"].get("label") for h in mine if h["kind"] == "relabel"] == \
               [f"{name}-{i}" for i in range(200) if i % 40]
    writers = [h["who"] for h in history]
    assert sum(a != b for a, b in zip(writers, writers[1:])) > 1  # the two really interleaved
    new_ids = [h["payload"]["new_cluster"] for h in history if h["kind"] == "split"]
    assert sorted(new_ids) == list(range(2, 12))  # concurrent splits never share a new id
    state = cur.state()
    assert state.num_cluster_ids == 12 and state.cluster_sizes()[2:].tolist() == [1] * 10


def test_threads_sharing_one_object_lose_nothing(cur):
    def session(name):
        for i in range(25):
            cur.relabel([i % 10], f"{name}-{i}", who=name)

    threads = [threading.Thread(target=session, args=(f"t{k}",)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = cur.history(limit=1000)
    assert len(history) == 75 and len({h["id"] for h in history}) == 75
    assert sorted(h["who"] for h in history) == sorted(["t0", "t1", "t2"] * 25)


def _open_curations(root: Path, barrier, trials: int) -> None:
    for trial in range(trials):
        barrier.wait(timeout=30)  # every process opens the same new database at the same moment
        Curation(root / str(trial), np.repeat(np.arange(2), 5))


def test_processes_opening_a_new_curation_at_once_all_succeed(tmp_path):
    # Two app sessions opening a run's curation for the first time race to create the database
    # and switch it to WAL; sqlite refuses that switch without waiting, so the loser must retry.
    trials, processes = 60, 4
    for trial in range(trials):
        (tmp_path / str(trial)).mkdir()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes)
    openers = [context.Process(target=_open_curations, args=(tmp_path, barrier, trials))
               for _ in range(processes)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(timeout=120)
    assert [opener.exitcode for opener in openers] == [0] * processes
    for trial in range(trials):
        assert Curation(tmp_path / str(trial), np.repeat(np.arange(2), 5)).history() == []


BURST = """
import sys
import numpy as np
from scan_core.explore.curation import Curation
cur = Curation(sys.argv[1], np.repeat(np.arange(4), 25))
for i in range(100000):
    edit = cur.move([i % 100], i % 4) if i % 2 else cur.relabel([i % 100], f"label {i}")
    print(edit, flush=True)
"""


def test_sigkill_mid_burst_keeps_every_acknowledged_edit(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", BURST, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    acknowledged = []
    try:
        while len(acknowledged) < 60:
            line = proc.stdout.readline()
            assert line, f"the writer died: {proc.stderr.read()}"
            acknowledged.append(int(line))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    rest = proc.stdout.read()
    acknowledged += [int(line) for line in rest.splitlines(keepends=True) if line.endswith("\n")]
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    cur = Curation(tmp_path, np.repeat(np.arange(4), 25))
    stored = {h["id"] for h in cur.history(limit=10**6)}
    assert set(acknowledged) <= stored
    assert acknowledged == list(range(1, len(acknowledged) + 1))
    cur.relabel([0], "after the crash")  # still writable
    assert cur.state().overrides[0] == "after the crash"


# ------------------------------------------------------------------ edits act on what the user saw

def test_every_write_raises_the_version_and_old_versions_replay(cur):
    assert cur.state().version == 0
    cur.name_cluster(0, "zero")            # version 1
    cur.merge(0, 1)                        # 2
    cur.undo()                             # 3: the merge undone
    cur.move([9], 0)                       # 4
    assert cur.state().version == 4
    assert cur.state_at(0).clusters.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2] and cur.state_at(0).names == {}
    assert cur.state_at(2).clusters.tolist() == [1, 1, 1, 1, 1, 1, 2, 2, 2, 2]   # by hand: 0 merged into 1
    assert cur.state_at(3).clusters.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]   # the merge undone again
    assert cur.state_at(4).clusters.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
    with pytest.raises(ValueError, match="ahead of the curation log"):
        cur.state_at(5)


def test_an_edit_on_a_cluster_another_session_merged_away_is_refused(cur):
    seen = cur.state().version             # tab B looks at cluster 0
    cur.merge(0, 1, who="alice")           # tab A merges 0 into 1
    for edit in (lambda: cur.split(0, [0], who="bob", seen=seen),
                 lambda: cur.name_cluster(0, "zeros", who="bob", seen=seen),
                 lambda: cur.move([9], 0, who="bob", seen=seen),
                 lambda: cur.merge(2, 0, who="bob", seen=seen)):
        with pytest.raises(StaleEdit, match=r"cluster 0 no longer exists: edit #1 by alice \(merge\)"):
            edit()
    with pytest.raises(StaleEdit, match="cluster 0"):
        cur.merge(0, 2, who="bob", seen=seen)
    assert [h["who"] for h in cur.history()] == ["alice"]   # nothing of bob's was logged
    cur.move([9], 0, who="bob", seen=cur.state().version)   # looking again, bob may refill it


def test_a_split_or_merge_of_a_cluster_that_changed_since_is_refused(cur):
    seen = cur.state().version
    cur.move([3], 0, who="alice")          # cluster 0 gains image 3
    with pytest.raises(StaleEdit, match=r"cluster 0 changed after you looked at it \(edit #1 by alice \(move\)\)"):
        cur.split(0, [0, 1], who="bob", seen=seen)
    with pytest.raises(StaleEdit, match="cluster 0 changed"):
        cur.merge(0, 2, who="bob", seen=seen)
    cur.name_cluster(0, "still here", who="bob", seen=seen)  # it still exists: naming it is fine
    cur.split(2, [9], who="bob", seen=seen)                  # cluster 2 is as bob saw it


def test_undo_a_chosen_edit_keeps_the_later_ones(cur):
    first = cur.name_cluster(0, "zero")
    cur.move([9], 0)
    assert cur.undo(edit=first)["id"] == first
    state = cur.state()
    assert state.names == {} and state.clusters[9] == 0
    with pytest.raises(ValueError, match=f"edit #{first} is undone already"):
        cur.undo(edit=first)
    with pytest.raises(ValueError, match="there is no edit #99"):
        cur.undo(edit=99)


def test_a_log_written_before_versions_gets_them(tmp_path):
    base = np.array([0, 0, 1, 1])
    with closing(sqlite3.connect(tmp_path / DB_NAME)) as db, db:
        db.executescript("""CREATE TABLE edits (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
            who TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL, undone INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('num_images', '4');
            INSERT INTO edits (at, who, kind, payload, undone) VALUES (0, 'old', 'move', '{"images": [0], "cluster": 1}', 0);
            INSERT INTO edits (at, who, kind, payload, undone) VALUES (0, 'old', 'move', '{"images": [1], "cluster": 1}', 1);""")
    cur = Curation(tmp_path, base)
    assert cur.state().clusters.tolist() == [1, 0, 1, 1] and cur.state().version == 2
    assert cur.state_at(1).clusters.tolist() == [1, 0, 1, 1]
    cur.name_cluster(1, "ones", seen=2)
    assert cur.state().version == 3


@pytest.mark.parametrize("text", ["abc\u202egpj.exe", "a\u2066b", "line\nbreak"])
def test_names_with_hidden_control_characters_are_refused(cur, text):
    with pytest.raises(ValueError, match="invisible control character .U\\+"):
        cur.name_cluster(0, text)
    with pytest.raises(ValueError, match="invisible control character"):
        cur.relabel([0], text)
    assert cur.history() == []


def test_a_large_selection_is_one_edit_and_a_new_process_replays_the_same_state(tmp_path):
    from scan_core.explore import curation
    rng = np.random.default_rng(0)
    base = rng.integers(0, 8, 200_000)
    cur = Curation(tmp_path, base)
    picked = rng.choice(len(base), 50_000, replace=False)
    cur.move(picked, 5, who="alice")
    cur.relabel(picked[:20_000], "checked", who="alice")
    cur.mark_outliers(picked[:7], who="bob")
    cur.accept(np.array([picked[0], picked[0], 11]), [5, 5, int(base[11])], who="bob")  # a repeat counts once
    cur.merge(2, 1, who="bob")
    cur.clear_label(picked[:10], who="alice")
    cur.undo(who="bob")  # the merge
    state = cur.state()
    assert len(cur.history()) == 6 and state.version == 7  # one edit each, however many images
    # the same state worked out by hand with numpy
    expected = base.copy()
    expected[picked] = 5
    assert np.array_equal(state.clusters, expected)
    assert np.array_equal(np.bincount(expected, minlength=8), state.cluster_sizes())
    labels = np.array([f"cluster {c}" for c in expected], dtype=object)
    labels[picked[10:20_000]] = "checked"
    assert (state.labels() == labels.astype(str)).all()
    assert state.outliers == set(picked[:7].tolist()) and state.reviewed == set(picked.tolist()) | {11}
    assert 11 in state.reviewed and 12 not in state.reviewed and len(state.reviewed | state.outliers) == 50_001
    assert plain(cur.history(3)[2]["payload"])["images"] == sorted({int(picked[0]), 11})  # the accept
    # a process that holds nothing in memory (another server) rebuilds it from the log
    curation._states.clear()
    again = Curation(tmp_path, base).state()
    assert again.digest() == state.digest() and again.version == state.version
    assert Curation(tmp_path, base).state_at(2).overrides == dict.fromkeys(sorted(picked[:20_000].tolist()), "checked")


def logged_clusters_and_names(run_dir: Path, base: np.ndarray) -> tuple[np.ndarray, dict[int, str], str]:
    """The clusters and names the log at ``run_dir`` holds, replayed here from its rows (moves and
    names only), and the log's id, read with sqlite alone."""
    clusters, names = base.copy(), {}
    with closing(sqlite3.connect(run_dir / DB_NAME)) as db:
        for kind, payload, images in db.execute("SELECT kind, payload, images FROM edits WHERE undone = 0 ORDER BY id"):
            payload = json.loads(payload)
            if kind == "move":
                clusters[np.frombuffer(images, dtype="<i4")] = payload["cluster"]
            else:
                assert kind == "name_cluster"
                names[payload["cluster"]] = payload["name"]
        log = db.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()[0]
    return clusters, names, log


def test_the_states_of_the_runs_used_last_are_kept_and_an_evicted_run_replays_its_log(tmp_path):
    """Six runs of the digits (labels as clusters, each shifted) with edits of their own: the states
    of the four used last stay in memory; a run dropped from it shows its edits again."""
    curation._states.clear()
    target = load_digits().target
    runs, bases = [tmp_path / f"run{i}" for i in range(6)], [(target + i) % 10 for i in range(6)]
    opened = []
    for i, (run, base) in enumerate(zip(runs, bases)):
        run.mkdir()
        cur = Curation(run, base)
        cur.move(np.arange(i, 100, 7), 9 - i)
        cur.name_cluster(i, f"digit {i}")
        cur.move([1000 + i], 0)
        cur.undo()  # the last move
        cur.state()
        opened.append(cur)
    logs = [logged_clusters_and_names(run, base)[2] for run, base in zip(runs, bases)]
    assert curation.CACHED_RUNS == 4 and len(curation._states) == 4
    assert [key[0] for key in curation._states] == logs[2:]
    opened[2].state()  # used again: run 3 is now the one used longest ago
    state = Curation(runs[0], bases[0]).state()  # run 0 was dropped: replayed from its log
    assert len(curation._states) == 4 and {key[0] for key in curation._states} == {logs[0], logs[2], logs[4], logs[5]}
    clusters, names, _ = logged_clusters_and_names(runs[0], bases[0])
    assert np.array_equal(state.clusters, clusters) and state.names == names == {0: "digit 0"} and state.version == 4
    assert (clusters[np.arange(0, 100, 7)] == 9).all() and clusters[1000] == bases[0][1000]  # by hand
    opened[3].move([5], 2)  # an instance whose run was dropped writes on its log's latest state
    clusters, names, _ = logged_clusters_and_names(runs[3], bases[3])
    assert np.array_equal(opened[3].state().clusters, clusters) and clusters[5] == 2 and names == {3: "digit 3"}
    assert opened[3].state().version == 5 and {key[0] for key in curation._states} == {logs[0], logs[2], logs[3], logs[5]}


def test_a_log_made_anew_at_the_same_path_shows_its_own_edits(tmp_path):
    """A run deleted and trained again under its name, with the same clusters: the server's states
    of the old log are not the new one's, whatever their versions."""
    old = Curation(tmp_path, BASE)
    old.move([0, 1], 2)
    assert old.state().clusters[:2].tolist() == [2, 2] and old.state().version == 1
    (tmp_path / DB_NAME).unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    new = Curation(tmp_path, BASE)
    new.name_cluster(0, "new")
    state = new.state()
    assert state.version == 1 and state.clusters.tolist() == BASE.tolist() and state.names == {0: "new"}


def test_a_new_cluster_from_images_of_several_clusters_gets_the_next_id_and_undoes(cur):
    cur.split(2, [9])                                        # ids 0..3 exist
    new = cur.new_cluster([1, 4, 4, 7], who="ann", name="people")
    state = cur.state()
    assert new == 4 and state.num_cluster_ids == 5
    assert state.members(4).tolist() == [1, 4, 7] and state.names[4] == "people"
    assert state.cluster_sizes().tolist() == [2, 2, 2, 1, 3]
    assert state.labels()[[1, 4, 7, 0]].tolist() == ["people", "people", "people", "cluster 0"]
    assert sorted(state.reviewed) == [1, 4, 7]               # the user's word: a refine learns them
    assert plain(cur.history(1)[0]["payload"]) == {"images": [1, 4, 7], "name": "people", "new_cluster": 4}
    assert cur.new_cluster([0, 3, 5]) == 5                    # with no name: "cluster 5"
    assert cur.state().labels()[0] == "cluster 5"
    cur.undo()
    cur.undo()
    state = cur.state()
    assert state.num_cluster_ids == 4 and state.clusters[[1, 4, 7]].tolist() == [0, 1, 2] and 4 not in state.names
    assert len(state.reviewed) == 0
    assert cur.new_cluster([0]) == 4                          # the undone ids are free again


def test_a_new_cluster_from_images_another_session_moved_is_refused(cur):
    seen = cur.state().version
    cur.move([4], 2, who="alice")
    with pytest.raises(StaleEdit, match=r"images \[4\] are no longer in the clusters you saw them in "
                                        r"\(edit #1 by alice \(move\)\)"):
        cur.new_cluster([0, 4], who="bob", seen=seen)
    assert cur.new_cluster([0, 1], who="bob", seen=seen) == 3  # images 0 and 1 are where bob saw them
    with pytest.raises(ValueError, match="non-empty"):
        cur.new_cluster([])


def test_a_split_by_selection_takes_the_picked_images_of_one_cluster(cur):
    new = cur.new_cluster([6, 8], seen=cur.state().version)
    state = cur.state()
    assert state.members(2).tolist() == [7, 9] and state.members(new).tolist() == [6, 8]


def test_two_clusters_with_images_never_share_a_name(cur):
    cur.name_cluster(0, "food")
    with pytest.raises(ValueError, match="cluster 0 is already named 'food'.*merge cluster 2 into cluster 0"):
        cur.name_cluster(2, " food ")                            # stripped: the same name
    with pytest.raises(ValueError, match="cluster 0 is already named 'food'"):
        cur.new_cluster([3], name="food")
    cur.name_cluster(0, "food")                                 # its own name again: fine
    cur.name_cluster(1, "Food")                                 # another spelling is another name
    assert len(cur.history()) == 3
    merged = cur.name_cluster(2, "food", who="ann", merge_same_name=True)   # asked: merged into cluster 0
    assert cur.history(1)[0]["id"] == merged and cur.history(1)[0]["kind"] == "merge"
    state = cur.state()
    assert state.members(0).tolist() == [0, 1, 2, 6, 7, 8, 9] and state.labels()[6] == "food"
    cur.merge(1, 0)                                              # cluster 1 ("Food") is empty now
    assert cur.name_cluster(cur.new_cluster([3]), "Food")        # an emptied cluster's name is free
    assert cur.state().labels()[3] == "Food"
    assert cur.name_cluster(2, "twos", merge_same_name=True)     # no cluster has it: a plain name
    assert cur.history(1)[0]["kind"] == "name_cluster"


def test_a_damaged_log_is_refused_naming_the_file_and_left_as_it_was(tmp_path):
    log = tmp_path / DB_NAME
    log.write_bytes(b"no sqlite here " * 200)
    with pytest.raises(LogUnusable, match="file is not a database") as raised:
        Curation(tmp_path, BASE)
    assert raised.value.path == log and str(log) in str(raised.value) and not raised.value.locked
    assert log.read_bytes() == b"no sqlite here " * 200 and sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]


def test_an_edit_on_a_log_another_program_holds_is_refused_and_the_saved_ones_stay(cur, monkeypatch):
    first = cur.move([0], 1, "alice")
    monkeypatch.setattr(curation, "BUSY_TIMEOUT_MS", 100)
    with closing(sqlite3.connect(cur.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another program writing, and not letting go
        with pytest.raises(LogUnusable, match="database is locked") as raised:
            cur.move([3], 0, "bob")
        assert raised.value.locked and raised.value.path == cur.path
        assert cur.state().clusters.tolist() == [1, 0, 0, 1, 1, 1, 2, 2, 2, 2]  # reading goes on meanwhile
        other.execute("ROLLBACK")
    assert [e["id"] for e in cur.history()] == [first]
    assert cur.move([3], 0, "bob") > first  # let go: the edit goes through
