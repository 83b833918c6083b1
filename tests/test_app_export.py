"""The Curate & export page's exports (Label Studio with an image URL prefix, the ImageFolder as a
.zip, errors on the page), headless with AppTest, and the app's refusal of foreign ``Host`` names
(DNS rebinding)."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pytest
from PIL import Image
from streamlit.runtime.context import ContextProxy, StreamlitHeaders
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1.util import patch_config_options

from scan_core.data.images import ImageSet
from ui.host import ALLOWED_HOSTS_ENV, host_allowed

from apptest import app, button, texts

PREFIX = "http://localhost:8081/"


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """The files the page's download buttons offer, by file name, as the browser would get them
    (AppTest drops its media files after each run)."""
    offered: dict[str, bytes] = {}
    add = MediaFileManager.add

    def recording(self, data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if is_for_static_download:
            offered[file_name] = data
        return add(self, data, mimetype, coordinates, file_name=file_name, is_for_static_download=is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", recording)
    return offered


def prepare_label_studio(at, prefix: str = "") -> None:
    at.text_input(key="ls_prefix").set_value(prefix).run()
    button(at, "Prepare Label Studio file").click().run()
    assert not at.exception, [e.value for e in at.exception]


def task_images(downloads: dict[str, bytes]) -> list[str]:
    return [task["data"]["image"] for task in json.loads(downloads["digits-label-studio.json"])]


def written_image_folder(home: Path) -> Path:
    (folder,) = (home / "exports" / "digits").glob("*-imagefolder")
    return folder


def test_label_studio_needs_a_prefix_for_images_without_files(home, monkeypatch):
    at = app(home, monkeypatch, page="curate_export")
    assert button(at, "Prepare Label Studio file").disabled
    assert "1,797 images have no file on the server" in texts(at) and "ImageFolder export below" in texts(at)
    assert not at.error and not [b for b in at.get("download_button") if b.proto.label == "Label Studio predictions"]


def test_label_studio_tasks_of_bundled_images_find_them_in_the_written_image_folder(own_home, monkeypatch, downloads):
    at = app(own_home, monkeypatch, page="curate_export")
    prepare_label_studio(at, PREFIX)
    assert not at.error and "Images are looked up in a served ImageFolder export" in texts(at)
    images = task_images(downloads)
    assert len(images) == 1797 and all(image.startswith(PREFIX) for image in images)
    (server_copy,) = (own_home / "exports" / "digits").glob("*-label-studio.json")
    assert server_copy.read_bytes() == downloads["digits-label-studio.json"]
    at.checkbox(key="imagefolder_outliers").check()
    button(at, "Write ImageFolder").click().run()
    folder = written_image_folder(own_home)
    pixels = np.asarray(ImageSet.load(own_home / "runs" / "digits" / "images").images)
    for index in (0, 500, 1796):
        served = folder / unquote(images[index].removeprefix(PREFIX))
        assert np.array_equal(np.asarray(Image.open(served)), pixels[index, ..., 0])
    assert all((folder / unquote(image.removeprefix(PREFIX))).is_file() for image in images)


@pytest.fixture
def folder_run(own_home) -> Path:
    """``own_home``'s digits run made a folder run: every image a PNG file, its id the path inside the folder
    (a run of other images: the curation of the bundled ones, pinned to their ids, goes)."""
    images_dir = own_home / "runs" / "digits" / "images"
    for store in (own_home / "runs" / "digits").glob("curation.sqlite*"):
        store.unlink()
    images = ImageSet.load(images_dir, mmap=False)
    source = own_home / "data" / "digits"
    ids = [f"{images.class_names[label]}/{i:04d} x.png" for i, label in enumerate(images.labels)]
    for rel, pixels in zip(ids, images.images):
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[..., 0]).save(source / rel)
    ImageSet(name="digits", images=images.images, ids=np.asarray(ids),
             paths=np.asarray([str(source / rel) for rel in ids]), labels=images.labels,
             class_names=images.class_names).save(images_dir)
    return source


def test_label_studio_of_a_folder_run_points_at_its_files_or_at_the_prefix(own_home, folder_run, monkeypatch,
                                                                         downloads):
    ids = np.load(own_home / "runs" / "digits" / "images" / "ids.npy").tolist()
    at = app(own_home, monkeypatch, page="curate_export")
    assert "Label Studio loads them only if it can reach that path" in texts(at)
    prepare_label_studio(at)
    assert task_images(downloads) == [str(folder_run / rel) for rel in ids]
    local_files = "/data/local-files/?d=digits/"
    prepare_label_studio(at, local_files)
    images = task_images(downloads)
    assert images == [local_files + quote(rel) for rel in ids]
    assert images[3] == local_files + f"{ids[3].split('/')[0]}/0003%20x.png"


def test_the_image_folder_writes_the_skipped_duplicates_and_names_the_files_left_out(own_home, folder_run,
                                                                                      monkeypatch):
    """A folder run whose loader skipped a copy of its first image and an image too large (as
    ``imageset.json`` records them): the page names the large file before any export, and the
    ImageFolder writes the copy beside its twin and says so."""
    images_dir = own_home / "runs" / "digits" / "images"
    ids = np.load(images_dir / "ids.npy").tolist()
    copy = f"{ids[0].split('/')[0]}/copy of the first.png"
    (folder_run / copy).write_bytes((folder_run / ids[0]).read_bytes())
    meta = json.loads((images_dir / "imageset.json").read_text())
    meta["skipped"] = [{"path": copy, "reason": f"duplicate of {ids[0]}"},
                       {"path": "huge.png", "reason": "image too large: 10562x16000 pixels, more than the limit of 89478485"}]
    (images_dir / "imageset.json").write_text(json.dumps(meta))
    at = app(own_home, monkeypatch, page="curate_export")
    assert "Every export leaves out 1 file of the source that the training skipped:" in [w.value for w in at.warning]
    listed = next(d.value for d in at.dataframe if "why" in d.value.columns)
    assert listed.to_dict("records") == [{"file": "huge.png", "why": meta["skipped"][1]["reason"]}]
    button(at, "Write ImageFolder").click().run()
    assert not at.exception and not at.error
    assert "Wrote 1,798 images in " in at.success[0].value and "1 of them duplicates" in at.success[0].value
    folder = written_image_folder(own_home)
    (twin,) = folder.glob(f"*/{ids[0].split('/')[1]}")
    assert (twin.parent / "copy of the first.png").read_bytes() == twin.read_bytes()
    assert len([p for p in folder.rglob("*") if p.is_file()]) == 1798


def test_the_image_folder_zip_holds_what_the_server_folder_gets(own_home, monkeypatch, downloads):
    at = app(own_home, monkeypatch, page="curate_export")
    button(at, "Build .zip").click().run()
    assert not at.exception and not at.error
    with zipfile.ZipFile(io.BytesIO(downloads["digits-imagefolder.zip"])) as archive:
        zipped = {name: archive.read(name) for name in archive.namelist()}
    assert list((own_home / "exports" / "digits").iterdir()) == []  # the zip's temporary folder is gone
    button(at, "Write ImageFolder").click().run()
    folder = written_image_folder(own_home)
    assert zipped == {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert len(zipped) == 1797  # no outliers marked: every image
    assert all(name.count("/") == 1 and name.endswith(".png") for name in zipped)


def test_a_failing_export_shows_its_error_on_the_page(own_home, monkeypatch):
    (own_home / "exports").mkdir()
    (own_home / "exports" / "digits").write_text("a file where the exports folder goes")
    at = app(own_home, monkeypatch, page="curate_export")
    prepare_label_studio(at, PREFIX)
    assert "Label Studio export failed" in texts(at)
    for label in ("Write ImageFolder", "Build .zip"):
        button(at, label).click().run()
        assert not at.exception and "ImageFolder export failed" in texts(at), label


@pytest.mark.parametrize("host, address, extra, allowed", [
    (None, "127.0.0.1", [], True),  # no Host header: no browser sent it (AppTest sends none)
    ("localhost:8501", "127.0.0.1", [], True),
    ("LocalHost", "127.0.0.1", [], True),
    ("127.0.0.1:80", "localhost", [], True),
    ("[::1]:8501", "::1", [], True),
    ("localhost:", "", [], True),
    ("evil.example:8501", "127.0.0.1", [], False),
    ("evil.example", "", [], False),  # unset address: treated as local
    ("evil.example", "127.0.0.2", [], False),  # all of 127/8 is loopback
    ("evil.example", "[::1]", [], False),
    ("localhost.evil.example:8501", "127.0.0.1", [], False),
    ("127.0.0.1.nip.io", "127.0.0.1", [], False),
    ("evil.example@localhost", "127.0.0.1", [], False),
    ("localhost:8501/evil", "127.0.0.1", [], False),
    ("localhost:http", "127.0.0.1", [], False),
    ("", "127.0.0.1", [], False),
    ("evil.example:8501", "0.0.0.0", [], True),  # opened to the network on purpose
    ("evil.example", "192.168.1.5", [], True),
    ("my-laptop:8501", "127.0.0.1", ["my-laptop"], True),
    ("My-Laptop", "127.0.0.1", [" my-laptop:9000 "], True),  # a port given with the name does not matter
    ("[fe80::1]:8501", "127.0.0.1", ["[fe80::1]"], True),
    ("evil.example", "127.0.0.1", ["http://evil.example"], False),  # not a name: ignored
    ("evil.example", "127.0.0.1", ["my-laptop"], False),
])
def test_host_allowed(host, address, extra, allowed):
    assert host_allowed(host, address, extra) is allowed


def request_from(monkeypatch, host: str) -> None:
    """Make ``st.context.headers`` carry ``Host: host``, as a browser's request does."""
    monkeypatch.setattr(ContextProxy, "headers", property(lambda self: StreamlitHeaders([("Host", host)])))


def test_a_foreign_host_gets_an_error_and_nothing_else(home, monkeypatch):
    request_from(monkeypatch, "evil.example:8501")
    with patch_config_options({"server.address": "127.0.0.1"}):
        at = app(home, monkeypatch, page="curate_export")
    assert "DNS rebinding" in " ".join(e.value for e in at.error)
    assert ALLOWED_HOSTS_ENV in " ".join(e.value for e in at.error)
    assert not at.title and not at.button and not at.tabs  # no page, no sidebar


@pytest.mark.parametrize("host, allowed_names", [("localhost:8501", ""), ("evil.example:8501", "a, evil.example")])
def test_local_and_allowed_hosts_get_the_app(home, monkeypatch, host, allowed_names):
    request_from(monkeypatch, host)
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, allowed_names)
    with patch_config_options({"server.address": "127.0.0.1"}):
        at = app(home, monkeypatch, page="curate_export")
    assert at.title[0].value == "Curate & export" and not at.error
