"""HOG descriptors: orientation binning on made-up edges, contrast and colour invariance, and
purer neighbours than pixels on real Fashion-MNIST images."""
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
