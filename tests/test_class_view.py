"""The classifier's view beside a frozen backbone's features (scan_core.method.class_view): the
lift through WordNet on hand-worked numbers and on a fact of ImageNet's class list, the view of the
real EfficientNet-Lite0 against its own classifier's probabilities computed apart, the settings
that may ask for it, and a run that records both."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scan_core.config import RunConfig
from scan_core.method.backbones import build_backbone
from scan_core.method.class_view import ClassView, classifying_backbone, lifted_classes
from scan_core.method.naming import imagenet_taxonomy
from scan_core.presets import make_config


def test_lifted_classes_sum_each_synsets_classes_then_take_the_root():
    # 3 classes; synset 0 covers classes 0 and 1 ("cat" over "tabby" and "tiger cat"), synset 1 all three
    covers = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    probs = torch.tensor([[0.16, 0.20, 0.64], [0.5, 0.5, 0.0]])
    assert torch.allclose(lifted_classes(probs, covers), torch.tensor([[0.6, 1.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="4 class probabilities against a hierarchy of 3 classes"):
        lifted_classes(torch.ones(1, 4) / 4, covers)


def test_dog_covers_exactly_imagenets_118_dog_breeds():
    """ImageNet-1k's dogs are its classes 151 (Chihuahua) to 268 (Mexican hairless), in its own order."""
    taxonomy = imagenet_taxonomy()
    dog = taxonomy.index("dog")
    column = np.asarray(taxonomy.covers[:, [dog]].toarray()).ravel()
    assert np.flatnonzero(column).tolist() == list(range(151, 269))


def test_the_view_of_efficientnet_lite0_is_its_features_and_its_lifted_probabilities():
    backbone = build_backbone("efficientnet-lite0-imagenet", 3, input_size=64).eval()
    view = ClassView(backbone).eval()
    x = torch.from_numpy(np.random.default_rng(0).random((3, 3, 48, 48), np.float32))
    with torch.no_grad():
        out = view(x).numpy()
        features = backbone(x).numpy()
        logits = backbone.net._fc(backbone(x)).numpy()  # the package's own classifier layer
    taxonomy = imagenet_taxonomy()
    assert view.feature_dim == 1280 + taxonomy.covers.shape[1] == out.shape[1]
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    assert np.allclose(out[:, :1280], unit, atol=1e-5)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    lifted = out[:, 1280:]
    assert np.allclose(np.linalg.norm(lifted, axis=1), 1, atol=1e-5)
    # at the root (entity) the whole mass, at "dog" that of classes 151-268; both scaled by one norm
    entity, dog = taxonomy.index("entity"), taxonomy.index("dog")
    dog_share = probs[:, 151:269].sum(1)
    assert np.allclose(lifted[:, dog] / lifted[:, entity], np.sqrt(dog_share), atol=1e-4)
    assert classifying_backbone(view) is backbone and classifying_backbone(backbone) is backbone


def test_only_a_frozen_backbone_with_its_classifier_may_have_the_view():
    with pytest.raises(ValueError, match="class_view needs a frozen backbone with its ImageNet classifier"):
        RunConfig(dataset="x", num_clusters=3, backbone="small-cnn", class_view=True)
    with pytest.raises(ValueError, match="class_view needs a frozen backbone"):
        RunConfig.from_dict({"dataset": "x", "num_clusters": 3, "backbone": "dinov2-vits14", "class_view": True,
                             "pretext": {"epochs": 0}})
    with pytest.raises(ValueError, match="needs a backbone with an ImageNet classifier, not SmallCNN"):
        ClassView(build_backbone("small-cnn", 3, 8))


def test_auto_leaves_the_view_to_be_asked_for():
    assert not make_config("/some/folder", 4, 600, 64, 3, backbone="efficientnet-lite0-imagenet").class_view
    assert make_config("/some/folder", 4, 600, 64, 3, backbone="efficientnet-lite0-imagenet", class_view=True).class_view
