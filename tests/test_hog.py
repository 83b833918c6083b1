"""HOG descriptors: orientation binning on made-up edges, contrast and colour invariance, and
purer neighbours than pixels on real Fashion-MNIST images."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from scan_core.method.hog import HOGPCA, hog, hog_space
from scan_core.method.neighbors import mine_neighbors, neighbor_purity


def edge(vertical: bool) -> torch.Tensor:
    image = torch.zeros(1, 1, 16, 16)
    if vertical:
        image[..., 8:] = 1.0   # intensity changes along x: gradient angle 0
    else:
        image[..., 8:, :] = 1.0  # along y: gradient angle pi / 2
    return image


def test_edges_land_in_their_orientation_bins():
    for vertical, expected in ((True, {0}), (False, {4, 5})):  # 9 bins of 20 degrees; 90 lies on 4|5
        cells = hog(edge(vertical), cell=4, bins=9).view(9, -1)
        strongest = cells.sum(1)
        assert set(torch.nonzero(strongest > 0.2 * strongest.max()).ravel().tolist()) == expected


def brute_force_hog(image: np.ndarray, cell: int, bins: int) -> np.ndarray:
    """The descriptor by its definition, pixel by pixel: ``image`` ``(C, H, W)``, the gradient of the
    strongest channel by central differences (edges repeated), its magnitude split between the two
    nearest unsigned orientation bins, averaged over ``cell`` windows at stride ``cell // 2``, each
    window L2-normalised (+ 1e-3), laid out bin-major as ``(bins, rows, columns)``."""
    channels, height, width = image.shape
    votes = np.zeros((bins, height, width))
    for y in range(height):
        for x in range(width):
            best = (-1.0, 0.0, 0.0)
            for c in range(channels):
                dx = image[c, y, min(x + 1, width - 1)] - image[c, y, max(x - 1, 0)]
                dy = image[c, min(y + 1, height - 1), x] - image[c, max(y - 1, 0), x]
                if math.hypot(dx, dy) > best[0]:
                    best = (math.hypot(dx, dy), dx, dy)
            magnitude, dx, dy = best
            position = (math.atan2(dy, dx) % math.pi) / math.pi * bins
            low = math.floor(position)
            votes[low % bins, y, x] += magnitude * (1 - (position - low))
            votes[(low + 1) % bins, y, x] += magnitude * (position - low)
    stride = cell // 2
    rows, columns = (height - cell) // stride + 1, (width - cell) // stride + 1
    cells = np.zeros((bins, rows, columns))
    for r in range(rows):
        for q in range(columns):
            window = votes[:, r * stride:r * stride + cell, q * stride:q * stride + cell].mean((1, 2))
            cells[:, r, q] = window / (np.linalg.norm(window) + 1e-3)
    return cells.ravel()


def test_hog_matches_its_definition_pixel_by_pixel():
    ramp = torch.arange(4.0).repeat(4, 1).view(1, 1, 4, 4) / 3  # by hand: |gx| 1/3, 2/3, 2/3, 1/3 per row
    expected = np.zeros(9)
    expected[0] = 0.5 / (0.5 + 1e-3)  # angle 0: all in bin 0; one 4x4 cell, mean magnitude 0.5
    assert np.allclose(hog(ramp, cell=4, bins=9).numpy().ravel(), expected, atol=1e-6)
    images = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    for cell, bins in ((4, 9), (3, 6)):
        ours = hog(images, cell=cell, bins=bins).numpy()
        for image, descriptor in zip(images.double().numpy(), ours):
            assert np.allclose(descriptor, brute_force_hog(image, cell, bins), atol=1e-5), (cell, bins)


def test_shape_contrast_and_colour():
    images = torch.rand(3, 1, 28, 28)
    descriptors = hog(images, cell=4, bins=9)
    assert descriptors.shape == (3, 9 * 13 * 13)
    assert torch.allclose(hog(images * 0.5, 4, 9), descriptors, atol=0.02)  # contrast: cells normalised
    assert torch.allclose(hog(images.repeat(1, 3, 1, 1), 4, 9), descriptors, atol=1e-5)  # gray RGB = gray


def test_an_edge_between_two_colours_of_equal_luminance_is_seen():
    # red (1, 0, 0) against a gray of the same luminance (0.299, ITU-R 601): grayscale shows no edge;
    # the red channel steps by 0.701, more than the others (0.299): that channel's gradient, angle 0
    image = torch.full((1, 3, 16, 16), 0.299)
    image[0, :, :, 8:] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    gray = image.mul(torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(gray, torch.full_like(gray, 0.299))
    assert hog(gray, cell=4, bins=9).abs().max() < 1e-6
    cells = hog(image, cell=4, bins=9).view(9, -1)
    strongest = cells.sum(1)
    assert set(torch.nonzero(strongest > 0.2 * strongest.max()).ravel().tolist()) == {0}
    # every gradient is the red channel's, the strongest at the step (0.701 against 0.299)
    assert torch.allclose(hog(image, 4, 9), hog(image[:, :1], 4, 9), atol=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda: hog(torch.rand(28, 28)), r"\(B, C, H, W\)"),
    (lambda: hog(torch.rand(1, 1, 3, 3), cell=4), "cell must be"),
    (lambda: hog(torch.rand(1, 1, 8, 8), bins=1), "bins must be"),
    (lambda: hog_space(np.zeros((1, 8, 8, 1), np.uint8)), "at least 2 images"),
    (lambda: HOGPCA.fit(np.zeros((1, 8, 8, 1), np.uint8), 4), "at least 2 images"),
])
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="dataset-fashion-mnist is not installed")
def test_hog_neighbours_are_purer_than_pixel_neighbours_on_fashion_mnist():
    from scan_core.data.sources import load_source
    images = load_source("fashion-mnist")
    subset = np.random.default_rng(0).choice(len(images), 10_000, replace=False)
    pixels, labels = np.asarray(images.images[subset]), images.labels[subset]
    space = hog_space(pixels)
    assert space.shape == (10_000, 128) and space.dtype == np.float32
    hog_purity = neighbor_purity(mine_neighbors(space, 20), labels)
    pixel_purity = neighbor_purity(mine_neighbors(pixels.reshape(len(pixels), -1).astype(np.float32), 20), labels)
    assert hog_purity > pixel_purity + 0.02, (hog_purity, pixel_purity)


def test_hog_pca_module_whitens_the_principal_components_of_the_descriptors():
    from sklearn.datasets import load_digits
    images = (load_digits().images[:300, :, :, None] * 255 / 16).astype(np.uint8)
    module = HOGPCA.fit(images, 6)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        whitened = module(x).numpy()
    descriptors = hog(x).numpy().astype(np.float64)  # independently: SVD of the centred descriptors
    centred = descriptors - descriptors.mean(0)
    _, singular, rows = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ rows[:6].T / (singular[:6] / np.sqrt(len(images) - 1))
    signs = np.sign((whitened * expected).sum(0))  # a component's sign is arbitrary
    assert whitened.shape == (300, 6)
    np.testing.assert_allclose(whitened * signs, expected, atol=2e-3)
    np.testing.assert_allclose(whitened.std(0, ddof=1), 1.0, atol=1e-3)
