"""Tests for scan_core.sources: built-in datasets, folders and zips, with real files made here."""
from __future__ import annotations

import gzip
import json
import os
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scan_core.data import sources
from scan_core.data.images import ImageSet
from scan_core.data.sources import SourceError, builtin, load_source, working_size, zips

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def gradient(mode: str, size=(24, 16), high=255) -> Image.Image:
    """A horizontal ramp 0..high in ``mode`` (any Pillow mode that fromarray/convert can make)."""
    width, height = size
    ramp = np.tile(np.linspace(0, high, width), (height, 1))
    if mode == "I;16":
        return Image.fromarray(ramp.astype(np.uint16))
    if mode == "F":
        return Image.fromarray(ramp.astype(np.float32))
    return Image.fromarray(ramp.astype(np.uint8)).convert(mode)


def make_labelled_folder(root: Path) -> Path:
    """``gray/`` (grayscale modes) and ``color/`` (colour modes, one nested deeper), mixed sizes."""
    save(root / "gray" / "mode1.png", gradient("1"))
    save(root / "gray" / "modeL.png", gradient("L", (30, 30)))
    save(root / "gray" / "modeLA.png", gradient("LA", (16, 40)))
    save(root / "gray" / "modeI16.png", gradient("I;16", high=65535))
    save(root / "gray" / "modeF.tif", gradient("F", high=3.0))
    save(root / "color" / "modeP.png", gradient("RGB").convert("P"))
    save(root / "color" / "modeRGB.JPG", gradient("RGB", (40, 32)), quality=95)
    save(root / "color" / "modeRGBA.webp", gradient("RGBA"))
    save(root / "color" / "modeCMYK.tiff", Image.new("CMYK", (20, 20), (0, 255, 255, 0)))
    save(root / "color" / "deep" / "er" / "nested.bmp", Image.new("RGB", (18, 18), GREEN))
    return root


# ------------------------------------------------------------------ working size

@pytest.mark.parametrize("sizes, expected", [
    ([(28, 28)] * 5, 28), ([(8, 8)], 16), ([(30, 40)], 28), ([(32, 100)], 32), ([(40, 40)], 40),
    ([(50, 50)], 48), ([(64, 64)], 64), ([(70, 90)], 68), ([(200, 300)], 96),
    ([(10, 10), (100, 100), (500, 600)], 96),
])
def test_working_size(sizes, expected):
    assert working_size(sizes) == expected


def test_colour_images_keep_up_to_the_side_a_pretrained_backbone_sees_within_the_cache_bound():
    from scan_core.data.sources.folders import colour_max_size
    assert working_size([(300, 400)] * 3, colour=True) == 224 and working_size([(300, 400)] * 3) == 96
    assert working_size([(150, 150)], colour=True) == 148       # never more than the images' own
    # 2 GiB / (3 bytes x 20,000 images) = 35,791 pixels: a side of 189, down to a multiple of 4
    assert colour_max_size(20_000) == 188 and colour_max_size(1_000) == 224
    assert colour_max_size(1_000_000) == 96                     # never below the grayscale cap


def test_working_size_rejects_empty():
    with pytest.raises(ValueError):
        working_size([])


# ------------------------------------------------------------------ folders

def test_folder_modes_labels_and_nesting(tmp_path):
    root = make_labelled_folder(tmp_path / "data")
    images = load_source(str(root), image_size=16)
    assert images.images.shape == (10, 16, 16, 3) and images.images.dtype == np.uint8
    assert images.class_names == ["color", "gray"]
    expected_ids = sorted((p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()),
                          key=lambda rel: rel.split("/"))
    assert images.ids.tolist() == expected_ids
    by_id = dict(zip(images.ids.tolist(), images.labels.tolist()))
    assert by_id["color/deep/er/nested.bmp"] == 0 and by_id["gray/modeF.tif"] == 1
    assert images.paths.tolist() == [str(root.resolve() / rel) for rel in expected_ids]
    assert images.skipped == [] and images.name == "data"
    # grayscale images expanded to RGB stay gray
    gray = images.images[images.labels == 1].astype(int)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    nested = images.images[images.ids.tolist().index("color/deep/er/nested.bmp")]
    assert (nested == GREEN).all()


def test_grayscale_only_folder_has_one_channel(tmp_path):
    root = make_labelled_folder(tmp_path / "data")
    images = load_source(str(root / "gray"), image_size=12)
    assert images.images.shape == (5, 12, 12, 1)
    assert images.labels is None and images.class_names == []


def test_high_bit_depth_and_float_are_scaled_not_clipped(tmp_path):
    save(tmp_path / "i16.png", gradient("I;16", (64, 64), high=65535))
    save(tmp_path / "i16_dim.png", Image.fromarray(np.full((64, 64), 1000, np.uint16)))
    save(tmp_path / "f.tif", gradient("F", (64, 64), high=-5.0))
    images = load_source(str(tmp_path), image_size=64)
    ramp, dim, flt = (images.images[images.ids.tolist().index(n), ..., 0].astype(int)
                      for n in ("i16.png", "i16_dim.png", "f.tif"))
    assert ramp[:, 0].max() <= 2 and ramp[:, -1].min() >= 253       # full 16-bit range -> 0..255
    assert np.all(np.diff(ramp[0]) >= 0) and 100 < ramp.mean() < 155
    assert (dim == round(1000 / 65535 * 255)).all()                 # scaled by 65535, not clipped
    assert flt[:, 0].min() >= 253 and flt[:, -1].max() <= 2           # min/max stretched


def test_alpha_is_composited_on_white_and_cmyk_converted(tmp_path):
    save(tmp_path / "clear_rgba.png", Image.new("RGBA", (10, 10), (255, 0, 0, 0)))
    save(tmp_path / "half_rgba.png", Image.new("RGBA", (10, 10), (0, 0, 0, 128)))
    save(tmp_path / "clear_la.png", Image.new("LA", (10, 10), (0, 0)))
    transparent_p = Image.new("P", (10, 10), 0)
    transparent_p.putpalette([255, 0, 0, 0, 255, 0])
    save(tmp_path / "clear_p.png", transparent_p, transparency=0)
    save(tmp_path / "cmyk.tif", Image.new("CMYK", (10, 10), (0, 255, 255, 0)))
    images = load_source(str(tmp_path), image_size=10)
    pixel = {i: images.images[k, 5, 5].tolist() for k, i in enumerate(images.ids.tolist())}
    assert pixel["clear_rgba.png"] == [255, 255, 255]
    assert pixel["clear_la.png"] == [255, 255, 255]
    assert pixel["clear_p.png"] == [255, 255, 255]
    assert all(126 <= v <= 128 for v in pixel["half_rgba.png"])
    assert pixel["cmyk.tif"] == [255, 0, 0]


def test_svg_clip_art_is_rendered_on_white_and_a_broken_one_is_skipped(tmp_path):
    """Vector clip art as a user's folder holds it: a red disc and a blue bar (a 2:1 canvas, centre
    cropped), drawn on transparency, rendered and composited on white; a truncated file is skipped."""
    (tmp_path / "discs").mkdir()
    (tmp_path / "bars").mkdir()
    (tmp_path / "discs" / "red.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><circle cx="20" cy="20" r="12" fill="#ff0000"/></svg>')
    (tmp_path / "bars" / "blue.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="80" height="40"><rect x="30" y="10" width="20" height="20" '
        'fill="#0000ff"/></svg>')
    (tmp_path / "bars" / "broken.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40"')
    images = load_source(str(tmp_path), image_size=32)
    by_id = {i: k for k, i in enumerate(images.ids.tolist())}
    assert set(by_id) == {"discs/red.svg", "bars/blue.svg"} and images.images.shape == (2, 32, 32, 3)
    red, blue = images.images[by_id["discs/red.svg"]], images.images[by_id["bars/blue.svg"]]
    assert red[16, 16].tolist() == [255, 0, 0] and red[1, 1].tolist() == [255, 255, 255]  # corner: white
    assert blue[16, 16].tolist() == [0, 0, 255] and blue[2, 16].tolist() == [255, 255, 255]
    assert images.class_names[images.labels[by_id["discs/red.svg"]]] == "discs"
    assert [s["path"] for s in images.skipped] == ["bars/broken.svg"]


def test_exif_orientation_is_applied(tmp_path):
    # 40x20 landscape, left half red, right half blue; Orientation=6 means "rotate 90 deg CW to
    # display": displayed it is 20x40 portrait with red on top. Without the rotation the centre
    # crop would be split left/right instead.
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    save(tmp_path / "rotated.jpg", image, exif=exif.tobytes(), quality=95)
    pixels = load_source(str(tmp_path), image_size=20).images[0].astype(int)
    top, bottom = pixels[:8].mean(axis=(0, 1)), pixels[-8:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (12, 12), colour) for colour in (RED, GREEN, BLUE)]
    save(tmp_path / "anim.gif", frames[0], save_all=True, append_images=frames[1:], duration=50)
    images = load_source(str(tmp_path), image_size=12)
    assert images.images.shape == (1, 12, 12, 3)
    assert (images.images[0] == RED).all()


def test_unreadable_files_are_skipped_with_reasons(tmp_path, monkeypatch, recwarn):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)     # 8x8 loads, 64x64 is a "bomb"
    save(tmp_path / "cls" / "over.png", Image.new("RGB", (12, 12), BLUE))  # 144: Pillow only warns
    good = save(tmp_path / "cls" / "good.png", Image.new("RGB", (8, 8), RED))
    jpeg = save(tmp_path / "cls" / "full.jpg", Image.new("RGB", (8, 8), GREEN))
    (tmp_path / "cls" / "truncated.jpg").write_bytes(jpeg.read_bytes()[:jpeg.stat().st_size // 2])
    jpeg.unlink()
    png = save(tmp_path / "cls" / "big.png", gradient("RGB", (64, 64)))
    (tmp_path / "cls" / "truncated.png").write_bytes(png.read_bytes()[:80])
    (tmp_path / "cls" / "text.png").write_text("this is not an image")
    (tmp_path / "cls" / "empty.jpeg").write_bytes(b"")
    (tmp_path / "cls" / "notes.txt").write_text("ignored, not an image extension")
    images = load_source(str(tmp_path))
    assert images.ids.tolist() == ["cls/good.png"] and images.paths[0] == str(good.resolve())
    reasons = {s["path"]: s["reason"] for s in images.skipped}
    assert set(reasons) == {"cls/truncated.jpg", "cls/truncated.png", "cls/text.png",
                            "cls/empty.jpeg", "cls/big.png", "cls/over.png"}
    assert all(reasons.values())
    assert "too large" in reasons["cls/big.png"]
    assert reasons["cls/over.png"] == "image too large: 12x12 pixels, more than the limit of 100"
    assert "not a readable image" in reasons["cls/text.png"]
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_exact_duplicates_are_kept_once(tmp_path):
    image = gradient("RGB", (20, 20))
    save(tmp_path / "a" / "first.png", image)
    save(tmp_path / "a" / "same_bytes.png", image)
    save(tmp_path / "b" / "other_format.bmp", image)           # other file, same decoded pixels
    save(tmp_path / "b" / "other_size.png", image.resize((24, 24)))
    save(tmp_path / "b" / "one_pixel_off.png", Image.fromarray(
        np.asarray(image) ^ np.pad(np.ones((1, 1, 3), np.uint8), ((0, 19), (0, 19), (0, 0)))))
    images = load_source(str(tmp_path), image_size=16)
    assert images.ids.tolist() == ["a/first.png", "b/one_pixel_off.png", "b/other_size.png"]
    assert images.skipped == [{"path": "a/same_bytes.png", "reason": "duplicate of a/first.png"},
                              {"path": "b/other_format.bmp", "reason": "duplicate of a/first.png"}]


def test_non_utf8_file_names_load_with_escaped_json_safe_ids(tmp_path):
    root = os.fsencode(tmp_path / "data")
    os.makedirs(os.path.join(root, b"d\xfcr"))
    for name, colour in ((b"caf\xe9.png", RED), (b"d\xfcr/ok.png", GREEN)):
        Image.new("RGB", (8, 8), colour).save(os.path.join(root, name), format="PNG")
    with open(os.path.join(root, b"d\xfcr/bad\xff.png"), "wb") as handle:
        handle.write(b"not an image")
    images = load_source(str(tmp_path / "data"))
    assert images.ids.tolist() == ["caf\\xe9.png", "d\\xfcr/ok.png"]
    assert images.skipped == [{"path": "d\\xfcr/bad\\xff.png", "reason": "not a readable image file"}]
    assert images.paths[0] == str(tmp_path / "data" / "caf\\xe9.png")
    images.save(tmp_path / "cache")
    for text in (*images.ids.tolist(), *images.paths.tolist(), json.dumps(images.skipped)):
        text.encode("utf-8")                                     # no lone surrogates
    again = ImageSet.load(tmp_path / "cache")
    assert again.ids.tolist() == images.ids.tolist() and again.skipped == images.skipped


def test_root_images_mean_no_labels_and_hidden_files_ignored(tmp_path):
    save(tmp_path / "a" / "x.png", Image.new("L", (8, 8), 1))
    save(tmp_path / "top.PNG", Image.new("L", (8, 8), 2))
    save(tmp_path / ".hidden.png", Image.new("L", (8, 8)))
    save(tmp_path / ".cache" / "y.png", Image.new("L", (8, 8)))
    images = load_source(str(tmp_path))
    assert images.ids.tolist() == ["a/x.png", "top.PNG"]
    assert images.labels is None and images.class_names == [] and not images.has_labels


def test_auto_working_size(tmp_path):
    for i in range(3):
        save(tmp_path / f"mnist{i}.png", Image.new("L", (28, 28), i))
    assert load_source(str(tmp_path)).images.shape == (3, 28, 28, 1)
    mixed = tmp_path / "mixed"
    for i, size in enumerate([(20, 30), (100, 140), (300, 200)]):
        save(mixed / f"{i}.png", Image.new("RGB", size))
    assert load_source(str(mixed)).images.shape == (3, 100, 100, 3)   # colour: the median side, 100


def test_symlinks_outside_the_folder_are_skipped(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    save(root / "in.png", Image.new("L", (8, 8)))
    save(outside / "out.png", Image.new("L", (8, 8)))
    (root / "link_in.png").symlink_to(root / "in.png")
    (root / "link_out.png").symlink_to(outside / "out.png")
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    images = load_source(str(root))
    assert images.ids.tolist() == ["in.png"]
    assert {s["path"]: s["reason"] for s in images.skipped} == {
        "link_in.png": "duplicate of in.png",          # a link inside is a copy of its target
        "link_out.png": "symlink points outside the folder",
        "linked_dir": "symlink points outside the folder"}


def test_progress_is_reported(tmp_path):
    for i in range(250):
        save(tmp_path / f"{i:03d}.png", Image.new("L", (8, 8), i))
    calls = []
    images = load_source(str(tmp_path), progress=lambda done, total: calls.append((done, total)))
    assert len(images) == 250
    assert calls[0] == (0, 250) and (100, 250) in calls and (200, 250) in calls
    assert calls[-1] == (250, 250)


def test_empty_missing_and_unreadable_folders_raise(tmp_path):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(SourceError, match="empty_folder"):
        load_source(str(empty))
    broken = tmp_path / "broken_folder"
    broken.mkdir()
    (broken / "a.png").write_text("nope")
    with pytest.raises(SourceError, match=r"no readable images in .*broken_folder.*1 files skip"):
        load_source(str(broken))
    with pytest.raises(SourceError, match="missing_folder"):
        load_source(str(tmp_path / "missing_folder"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(SourceError, match="file.txt"):
        load_source(str(tmp_path / "file.txt"))


def test_bad_arguments():
    with pytest.raises(ValueError):
        load_source("")
    with pytest.raises(ValueError):
        load_source("digits", image_size=0)
    with pytest.raises(ValueError):
        load_source("digits", image_size=True)
    with pytest.raises(SourceError, match="splits"):
        load_source("digits:train")
    with pytest.raises(SourceError, match="no split 'valid'"):
        load_source("cifar10:valid")


def test_imageset_round_trip(tmp_path):
    root = make_labelled_folder(tmp_path / "data")
    (root / "color" / "junk.png").write_text("junk")
    images = load_source(str(root), image_size=16)
    images.save(tmp_path / "cache")
    again = ImageSet.load(tmp_path / "cache")
    assert all(isinstance(shard, np.memmap) for shard in again.images.shards)
    np.testing.assert_array_equal(again.images, images.images)
    np.testing.assert_array_equal(again.labels, images.labels)
    assert again.ids.tolist() == images.ids.tolist()
    assert again.paths.tolist() == images.paths.tolist()
    assert again.class_names == images.class_names and again.skipped == images.skipped
    assert [s["path"] for s in again.skipped] == ["color/junk.png"]


# ------------------------------------------------------------------ zips

def zip_folder(folder: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return target


@pytest.mark.parametrize("prefix", ["", "data/"])
def test_zip_matches_folder_and_is_reused(tmp_path, monkeypatch, prefix):
    root = make_labelled_folder(tmp_path / "data")
    archive = zip_folder(root, tmp_path / "archive.zip", prefix)
    cache = tmp_path / "cache"
    direct = load_source(str(root), image_size=16)
    zipped = load_source(str(archive), data_dir=cache, image_size=16)
    assert zipped.name == "archive"
    assert zipped.ids.tolist() == direct.ids.tolist()
    assert zipped.class_names == direct.class_names
    np.testing.assert_array_equal(zipped.labels, direct.labels)
    np.testing.assert_array_equal(zipped.images, direct.images)
    assert all(Path(p).is_file() and Path(p).is_relative_to(cache) for p in zipped.paths)
    monkeypatch.setattr(zips, "_extract_entry", lambda *a: pytest.fail("extracted again"))
    again = load_source(str(archive), data_dir=cache, image_size=16)
    assert again.ids.tolist() == direct.ids.tolist()


def test_zip_slip_entries_are_skipped(tmp_path):
    good = save(tmp_path / "src" / "good.png", Image.new("RGB", (8, 8), RED))
    archive = tmp_path / "work" / "evil.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(good, "good.png")
        for name in ("../evil.png", "/abs.png", "a\\..\\..\\win.png"):
            handle.writestr(name, good.read_bytes())     # writestr keeps the name verbatim
        handle.writestr("__MACOSX/._good.png", b"resource fork")
    cache = tmp_path / "work" / "cache"
    images = load_source(str(archive), data_dir=cache)
    assert images.ids.tolist() == ["good.png"]
    assert {s["path"] for s in images.skipped} == {"../evil.png", "/abs.png", "a\\..\\..\\win.png"}
    assert all("unsafe" in s["reason"] for s in images.skipped)
    written = {p.name for p in tmp_path.rglob("*.png")}
    assert written == {"good.png"} and not Path("/abs.png").exists()


def test_zip_limits_and_corrupt_zip(tmp_path, monkeypatch):
    root = make_labelled_folder(tmp_path / "data")
    archive = zip_folder(root, tmp_path / "big.zip")
    monkeypatch.setattr(zips, "ZIP_MAX_FILES", 3)
    with pytest.raises(SourceError, match=r"big\.zip.*entries"):
        load_source(str(archive), data_dir=tmp_path / "cache")
    monkeypatch.setattr(zips, "ZIP_MAX_FILES", 1000)
    monkeypatch.setattr(zips, "ZIP_MAX_TOTAL_BYTES", 100)
    with pytest.raises(SourceError, match=r"big\.zip.*bytes"):
        load_source(str(archive), data_dir=tmp_path / "cache")
    extracted = tmp_path / "cache" / "zips"
    assert not extracted.exists() or not any(extracted.iterdir())
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(SourceError, match=r"bad\.zip"):
        load_source(str(tmp_path / "bad.zip"), data_dir=tmp_path / "cache")
    with zipfile.ZipFile(tmp_path / "no_images.zip", "w") as handle:
        handle.writestr("readme.txt", "nothing to see")
    with pytest.raises(SourceError, match=r"no_images\.zip.*no readable images"):
        load_source(str(tmp_path / "no_images.zip"), data_dir=tmp_path / "cache")
    (tmp_path / "cut.zip").write_bytes(archive.read_bytes()[:200])
    with pytest.raises(SourceError, match=r"cut\.zip"):
        load_source(str(tmp_path / "cut.zip"), data_dir=tmp_path / "cache")


# ------------------------------------------------------------------ built-in datasets

def test_digits():
    digits = load_source("digits")
    assert digits.images.shape == (1797, 16, 16, 1) and digits.images.dtype == np.uint8
    assert digits.images.min() == 0 and digits.images.max() == 255
    assert digits.class_names == [str(d) for d in range(10)]
    assert np.bincount(digits.labels).min() >= 170 and digits.labels.max() == 9
    assert digits.ids[0] == "digits/0000" and digits.ids[-1] == "digits/1796"
    assert set(digits.paths.tolist()) == {""}
    native = load_source("digits", image_size=8)
    from sklearn.datasets import load_digits
    expected = np.rint(load_digits().images * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(native.images[..., 0], expected)


@pytest.mark.skipif(not (FASHION_DEBIAN / "train-images-idx3-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_files(tmp_path):
    full = load_source("fashion-mnist", data_dir=tmp_path)  # its time: bench/bench_load.py
    assert full.images.shape == (70000, 28, 28, 1)
    assert np.bincount(full.labels).tolist() == [7000] * 10
    assert full.ids[0] == "fashion-mnist/train/00000" and full.ids[-1] == "fashion-mnist/test/09999"
    assert full.class_names[0] == "T-shirt/top" and full.class_names[-1] == "Ankle boot"
    train = load_source("fashion-mnist:train", data_dir=tmp_path)
    test = load_source("fashion-mnist:test", data_dir=tmp_path)
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    np.testing.assert_array_equal(full.images[60000:], test.images)


def idx_bytes(array: np.ndarray) -> bytes:
    magic = {3: 2051, 1: 2049}[array.ndim]
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_fake_fashion(folder: Path, n_train=5, n_test=3, compress=True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))),
                            ("labels-idx1", np.arange(n) % 10)):
            data = idx_bytes(array)
            name = f"{prefix}-{kind}-ubyte"
            if compress:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)


def test_fashion_mnist_fake_idx_files(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    write_fake_fashion(debian)
    monkeypatch.setattr(builtin, "FASHION_DIRS", [debian])
    both = load_source("fashion-mnist", data_dir=tmp_path / "data")
    assert both.images.shape == (8, 28, 28, 1) and both.name == "fashion-mnist"
    assert both.labels.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert both.ids.tolist()[4:6] == ["fashion-mnist/train/00004", "fashion-mnist/test/00000"]
    test = load_source("fashion-mnist:test", data_dir=tmp_path, image_size=14)
    assert test.images.shape == (3, 14, 14, 1)
    # plain IDX files in data_dir/fashion-mnist are found too
    monkeypatch.setattr(builtin, "FASHION_DIRS", [tmp_path / "nowhere"])
    write_fake_fashion(tmp_path / "data" / "fashion-mnist", n_train=2, compress=False)
    assert len(load_source("fashion-mnist:train", data_dir=tmp_path / "data")) == 2


@pytest.mark.parametrize("damage", ["truncated", "bad_magic", "cut_gzip"])
def test_fashion_mnist_damaged_file_is_named(tmp_path, monkeypatch, damage):
    write_fake_fashion(tmp_path)
    monkeypatch.setattr(builtin, "FASHION_DIRS", [tmp_path])
    target = tmp_path / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(target.read_bytes())
    if damage == "truncated":
        target.write_bytes(gzip.compress(data[:-100]))
    elif damage == "bad_magic":
        target.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + data[4:]))
    else:
        target.write_bytes(gzip.compress(data)[:-30])
    with pytest.raises(SourceError, match="train-images-idx3-ubyte.gz"):
        load_source("fashion-mnist", data_dir=tmp_path / "data")


def _offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_fashion_mnist_offline_message(tmp_path, monkeypatch):
    from torchvision import datasets
    monkeypatch.setattr(builtin, "FASHION_DIRS", [tmp_path / "not-installed"])
    monkeypatch.setattr(datasets, "FashionMNIST", _offline)
    data_dir = tmp_path / "downloads"
    with pytest.raises(SourceError) as error:
        load_source("fashion-mnist:train", data_dir=data_dir)
    message = str(error.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert str(data_dir) in message and "internet" in message


@pytest.mark.parametrize("spec, title, cls", [("cifar10", "CIFAR-10", "CIFAR10"),
                                              ("stl10:train", "STL-10", "STL10")])
def test_torchvision_offline_message(tmp_path, monkeypatch, spec, title, cls):
    from torchvision import datasets
    monkeypatch.setattr(datasets, cls, _offline)
    with pytest.raises(SourceError, match=f"could not download {title} into {tmp_path}.*internet"):
        load_source(spec, data_dir=tmp_path)


def test_default_data_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAN_EXPLORER_DATA", str(tmp_path / "elsewhere"))
    assert sources.default_data_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("SCAN_EXPLORER_DATA")
    assert sources.default_data_dir() == Path(os.path.expanduser("~/.cache/scan_explorer/datasets"))
