"""Fixtures every test module may use: the digits set, ``wait_for`` to poll a condition, and the
app tests' workspaces (``home``: a really trained digits run, shared by the session; ``own_home``:
a copy of it for a test that edits a run)."""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# the tests see only the pretrained weights they make themselves (and the pip-installed ones), never
# a model cache of the machine they run on: what auto picks must not depend on it
_NO_CACHES = tempfile.mkdtemp(prefix="scan-tests-caches-")
os.environ.update(HF_HUB_CACHE=os.path.join(_NO_CACHES, "hub"), TORCH_HOME=os.path.join(_NO_CACHES, "torch"))
os.environ.pop("SCAN_EXPLORER_WEIGHTS", None)
os.environ["SCAN_EXPLORER_OFFLINE"] = "1"  # no test downloads weights; tests/test_weights.py serves its own

import torch  # noqa: E402

torch.set_num_threads(max(1, os.cpu_count() or 1))


class _Checkpoint(type(Path())):
    state: dict


@pytest.fixture
def dinov2_weights(tmp_path, monkeypatch) -> _Checkpoint:
    """A DINOv2 ViT-S/14 with random weights, saved as timm's checkpoint of it is (518 px position
    embeddings, safetensors) in ``$SCAN_EXPLORER_WEIGHTS`` under the name the registry looks for: the
    path, with the saved tensors as ``.state``."""
    import timm
    from safetensors.torch import save_file
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(folder))
    state = {key: value.contiguous() for key, value in
             timm.create_model("vit_small_patch14_dinov2", pretrained=False).state_dict().items()}
    path = _Checkpoint(folder / "vit_small_patch14_dinov2.lvd142m.safetensors")
    save_file(state, path)
    path.state = state
    return path


@pytest.fixture(scope="session")
def digits():
    from scan_core.data.sources import load_digits
    return load_digits()


def _wait_for(predicate, timeout: float = 120.0, every: float = 0.2, process: subprocess.Popen | None = None,
              what: str = "the condition"):
    """Poll ``predicate()`` until it returns something true, and return that. Fail when ``timeout``
    seconds pass, or when ``process`` (if given) ends first, with the end of its stderr."""
    deadline = time.time() + timeout
    while not (value := predicate()):
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process ended (code {process.returncode}) before {what}: "
                        f"{process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        if time.time() > deadline:
            if process is not None:
                process.kill()
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
    return value


@pytest.fixture
def wait_for():
    """:func:`_wait_for`: ``wait_for(predicate, timeout=120, every=0.2, process=None, what=...)``."""
    return _wait_for


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """A workspace with ``digits`` (a real digits-preset run) and ``nolabels`` (its copy, labels removed)."""
    from scan_core.data.artifacts import load_json, save_json
    from scan_core.engine.run import train_run
    from scan_core.explore.workspace import Workspace
    ws = Workspace.create(tmp_path_factory.mktemp("app") / "home")
    train_run(ws.runs / "digits", "digits", 10, preset="digits", show_bar=False)
    unlabelled = ws.runs / "nolabels"
    shutil.copytree(ws.runs / "digits", unlabelled)
    meta = load_json(unlabelled / "images" / "imageset.json")
    save_json(unlabelled / "images" / "imageset.json", {**meta, "labelled": False, "class_names": []})
    (unlabelled / "images" / "labels.npy").unlink()
    return ws.home


@pytest.fixture
def own_home(home: Path, tmp_path: Path) -> Path:
    """A copy of the workspace, for a test that edits a run's curation (the others see it unedited)."""
    shutil.copytree(home, tmp_path / "home")
    return tmp_path / "home"


@pytest.fixture(scope="session")
def jobs_home(home: Path, tmp_path_factory) -> Path:
    """A workspace with a run after each kind of job: ``digits`` (trained), ``suggested`` (trained
    with K suggested from its features) and ``refined`` (the digits run refined with 40 images
    moved by hand to the cluster most of their true class is in)."""
    import json

    import numpy as np

    from scan_core.engine.run import train_run
    from scan_core.explore.curation import Curation
    from scan_core.explore.refine import request_refine
    target = tmp_path_factory.mktemp("jobs") / "home"
    shutil.copytree(home, target)
    shutil.rmtree(target / "runs" / "nolabels")
    runs = target / "runs"
    train_run(runs / "suggested", "digits", "auto", preset="digits", show_bar=False)
    shutil.copytree(runs / "digits", runs / "refined")
    final = json.loads((runs / "refined" / "metrics.json").read_text())["final"]["stage"]
    clusters = np.load(runs / "refined" / f"{final}_probs.npy").argmax(1)
    labels = np.load(runs / "refined" / "images" / "labels.npy")
    majority = np.array([np.bincount(clusters[labels == c]).argmax() for c in range(10)])
    wrong = np.flatnonzero(clusters != majority[labels])[:40]
    store = Curation(runs / "refined", clusters)
    for cluster in np.unique(majority[labels[wrong]]):
        store.move(wrong[majority[labels[wrong]] == cluster], int(cluster))
    request_refine(runs / "refined", epochs=5)
    train_run(runs / "refined", show_bar=False)
    return target
