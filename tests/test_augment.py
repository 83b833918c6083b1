"""Batched augmentations: shapes, ranges and per-image randomness."""
import itertools

import numpy as np
import pytest
import torch

from scan_core.method import augment
from scan_core.method.augment import AugmentConfig, cutout, equalize, simclr_view, strong_view, to_tensor


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_to_tensor_layout_and_range():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    images[0, 0, 0] = (0, 255, 7)
    x = to_tensor(images)
    assert x.shape == (2, 3, 5, 6) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert x[0, :, 0, 0].tolist() == pytest.approx([0.0, 1.0, 7 / 255])
    assert torch.allclose(x, torch.tensor(images).permute(0, 3, 1, 2).float() / 255)


def test_to_tensor_rejects_3d():
    with pytest.raises(ValueError):
        to_tensor(np.zeros((5, 6, 3), np.uint8))


def same_image_batch(channels, batch=8, size=16):
    image = torch.rand(1, channels, size, size)
    return image.repeat(batch, 1, 1, 1)


@pytest.mark.parametrize("view", [simclr_view, strong_view])
@pytest.mark.parametrize("channels", [1, 3])
def test_views_keep_shape_and_range_and_differ_per_image(view, channels):
    x = same_image_batch(channels)
    out = view(x, AugmentConfig())
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    for i, j in itertools.combinations(range(len(out)), 2):
        assert not torch.allclose(out[i], out[j]), f"images {i} and {j} got the same augmentation"


@pytest.mark.parametrize("kwargs", [
    {"crop_scale": (0.0, 1.0)}, {"crop_scale": (0.6, 0.3)}, {"crop_scale": (0.2, 1.5)},
    {"cutout": -0.1}, {"cutout": 1.5},
])
def test_augment_config_validation(kwargs):
    with pytest.raises(ValueError):
        AugmentConfig(**kwargs)


def test_augment_config_rejects_negative_strong_ops():
    with pytest.raises(ValueError):
        AugmentConfig(strong_ops=-1)


def test_equalize_range_and_monotone():
    x = torch.rand(2, 3, 8, 8)
    out = equalize(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    for image_in, image_out in zip(x.reshape(6, -1), out.reshape(6, -1)):
        order = image_in.argsort()
        assert (image_out[order].diff() >= 0).all()  # order-preserving per channel
        assert image_out.max() == 1.0


def test_equalize_leaves_constant_image_unchanged():
    x = torch.full((1, 1, 6, 6), 128 / 255)
    assert torch.allclose(equalize(x), x)


def test_equalize_keeps_black_background_black(digits):
    x = to_tensor(digits.images[:8])
    assert (equalize(x).amin(dim=(1, 2, 3)) == 0).all()


def test_cutout_zeros_one_square_per_image():
    x = torch.ones(64, 1, 16, 16)
    out = cutout(x, 0.5)
    holes = out == 0
    assert holes.any()
    assert ((out == 0) | (out == 1)).all()  # nothing else changes
    for hole in holes[:, 0]:
        rows, cols = hole.any(1).nonzero(), hole.any(0).nonzero()
        if len(rows):  # square of side < 0.5 * 16
            assert rows.max() - rows.min() < 8 and cols.max() - cols.min() < 8
            assert hole.sum() == len(rows) * len(cols)
    assert torch.equal(cutout(x, 0.0), x)


def left_dark_right_bright(batch=64, size=16):
    x = torch.zeros(batch, 1, size, size)
    x[..., size // 2:] = 1.0
    return x


def test_strong_view_without_ops_or_cutout_respects_flip_flag():
    """With no ops, no Cutout and crop_scale (1, 1) only a mild crop remains (plus the flip)."""
    x = left_dark_right_bright()
    config = {"strong_ops": 0, "cutout": 0.0, "crop_scale": (1.0, 1.0)}
    out = strong_view(x, AugmentConfig(flip=False, **config))
    assert (out[..., :4].mean((1, 2, 3)) < 0.1).all() and (out[..., -4:].mean((1, 2, 3)) > 0.9).all()
    flipped = strong_view(x, AugmentConfig(flip=True, **config))
    mirrored = flipped[..., :4].mean((1, 2, 3)) > 0.9
    assert 0 < mirrored.sum() < len(x)


def test_strong_view_with_all_ops_stays_in_range():
    x = torch.rand(32, 3, 16, 16)
    out = strong_view(x, AugmentConfig(strong_ops=len(augment.STRONG_OPS)))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_simclr_crop_of_constant_image_is_constant():
    x = torch.full((64, 1, 16, 16), 0.5)
    out = simclr_view(x, AugmentConfig(jitter=(0, 0, 0, 0), grayscale_p=0.0))
    assert torch.allclose(out, x, atol=1e-3)


def test_the_batched_colour_ops_match_torchvision_per_image():
    """Each batched op against ``torchvision.transforms.v2.functional`` one image at a time, with the
    image's own factor. Sharpness: the interior (torchvision keeps the border pixels, the batched op
    blurs them against replicated edges). Hue is a YIQ rotation here, not torchvision's HSV shift."""
    from torchvision.transforms.v2 import functional as TF

    from scan_core.method import augment
    torch.manual_seed(0)
    x = torch.rand(4, 3, 12, 12)
    factors = torch.tensor([0.3, 0.8, 1.2, 1.9])
    cases = {"brightness": (augment.adjust_brightness, TF.adjust_brightness),
             "contrast": (augment.adjust_contrast, TF.adjust_contrast),
             "saturation": (augment.adjust_saturation, TF.adjust_saturation)}
    for name, (batched, reference) in cases.items():
        got = batched(x, factors)
        for i, factor in enumerate(factors.tolist()):
            assert torch.allclose(got[i], reference(x[i], factor), atol=2e-3), name
    sharp = augment.adjust_sharpness(x, factors)
    for i, factor in enumerate(factors.tolist()):
        assert torch.allclose(sharp[i, :, 1:-1, 1:-1], TF.adjust_sharpness(x[i], factor)[:, 1:-1, 1:-1], atol=1e-5)
    thresholds = torch.tensor([0.2, 0.5, 0.7, 0.9])
    solar = augment.solarize(x, thresholds)
    for i, threshold in enumerate(thresholds.tolist()):
        assert torch.allclose(solar[i], TF.solarize(x[i], threshold))
    auto = augment.autocontrast(x)
    for i in range(4):
        assert torch.allclose(auto[i], TF.autocontrast(x[i]), atol=1e-5)
    levels = (x * 255).round() / 255  # posterize works on 8-bit levels, as torchvision's does on uint8
    bits = torch.tensor([1, 3, 5, 8])
    poster = augment.posterize(levels, bits)
    for i, b in enumerate(bits.tolist()):
        expected = TF.posterize((levels[i] * 255).round().to(torch.uint8), b).float() / 255
        assert torch.allclose(poster[i], expected, atol=1e-6)


def test_the_crop_matrix_resamples_the_box_torchvision_crops():
    """A crop matrix of width w, height h and centre (cx, cy) (normalised, align_corners False) is the
    pixel box left = (cx - w + 1) W / 2, top = (cy - h + 1) H / 2 of w W x h H pixels, resized back:
    worked by hand for a 10 x 8 box at (4, 2) of a 16 x 16 image, against ``resized_crop``. The outer
    pixels differ: there the crop reads across the box's edge, where ``resized_crop`` repeats it."""
    from torchvision.transforms.v2 import functional as TF

    from scan_core.method import augment
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    theta = torch.tensor([[[10 / 16, 0.0, 0.125], [0.0, 8 / 16, -0.25]]])  # cx = 2 * 4 / 16 + 10 / 16 - 1
    ours = augment._warp(x, theta, padding="border")
    expected = TF.resized_crop(x[0], top=2, left=4, height=8, width=10, size=[16, 16], antialias=False)
    assert torch.allclose(ours[0, :, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5)
    torch.manual_seed(0)
    drawn = augment._crop_flip_theta(2000, (0.2, 1.0), flip=True, device="cpu")
    width, height = drawn[:, 0, 0].abs(), drawn[:, 1, 1]
    assert (drawn[:, 0, 2].abs() <= 1 - width + 1e-6).all() and (drawn[:, 1, 2].abs() <= 1 - height + 1e-6).all()
    ratio = width / height  # in the box's pixels, for a square image
    unclamped = (width < 1) & (height < 1)
    assert ((ratio[unclamped] > 3 / 4 - 1e-4) & (ratio[unclamped] < 4 / 3 + 1e-4)).all()
    assert ((width * height)[unclamped] >= 0.2 - 1e-6).all() and (width * height <= 1 + 1e-6).all()
    assert 0.45 < (drawn[:, 0, 0] < 0).float().mean() < 0.55  # flipped half the time


def test_the_hue_rotation_keeps_luma_and_turns_by_the_shift():
    """Hue here turns the chroma (I, Q) of YIQ (the NTSC matrix, written out below), not
    torchvision's HSV shift: luma stays, a whole turn is no change, two turns add up."""
    from scan_core.method import augment
    x = 0.4 + 0.2 * torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(2))  # no clipping
    luma = lambda image: 0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2]
    shift = torch.tensor([0.05, -0.1, 0.08])
    turned = augment.adjust_hue(x, shift)
    assert torch.allclose(luma(turned), luma(x), atol=1e-5)
    assert torch.allclose(augment.adjust_hue(x, torch.ones(3)), x, atol=1e-5)
    assert torch.allclose(augment.adjust_hue(augment.adjust_hue(x, shift), shift), augment.adjust_hue(x, 2 * shift),
                          atol=1e-4)
    i = lambda image: 0.596 * image[:, 0] - 0.274 * image[:, 1] - 0.322 * image[:, 2]
    q = lambda image: 0.211 * image[:, 0] - 0.523 * image[:, 1] + 0.312 * image[:, 2]
    angle = torch.atan2(q(turned), i(turned)) - torch.atan2(q(x), i(x))
    turns = torch.remainder(angle / (2 * torch.pi) + 0.5, 1.0) - 0.5
    assert torch.allclose(turns, shift.view(3, 1, 1).expand_as(turns), atol=1e-4)
