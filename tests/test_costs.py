"""The cost model behind the ETA and auto's time budget, on hand-worked numbers."""
import pytest

from scan_core import costs
from scan_core.config import RunConfig
from scan_core.costs import fit_epochs, stage_seconds
from scan_core.presets import make_config, pretrained_plan
from scan_core.pretrained import pretrained_spec


@pytest.fixture
def lite0_11ms(monkeypatch):
    """EfficientNet-Lite0 at 11 ms an image at 128 px (its table entry is at its own 224 px), so
    that the plans below can be worked by hand whatever the measured table says."""
    monkeypatch.setitem(costs.PRETRAINED_COSTS, "efficientnet-lite0-imagenet", 0.011 * (224 / 128) ** 2)


def test_a_stage_without_a_cost_is_refused_by_name():
    config = RunConfig.from_dict({"dataset": "x", "num_clusters": 2})
    with pytest.raises(ValueError, match="no cost for the stages \\['unheard'\\]"):
        stage_seconds(config, 100, 28, ["images", "unheard"])


def test_fit_epochs_counts_whole_epochs_within_the_budget():
    assert fit_epochs(0.5, 100, 260.0, 15) == 5        # 50 s an epoch: 5 fit in 260 s
    assert fit_epochs(0.5, 100, 10_000.0, 15) == 15    # never more than asked
    assert fit_epochs(0.5, 100, 0.0, 15) == 1          # at least one, however little is left
    with pytest.raises(ValueError, match="seconds_per_step > 0"):
        fit_epochs(0.0, 100, 10.0, 3)


def test_a_time_budget_cuts_the_simclr_estimate_to_what_the_other_stages_leave():
    config = RunConfig.from_dict({"dataset": "x", "num_clusters": 2, "head_input": "features", "backbone": "small-cnn",
                                  "backbone_width": 16, "pretext": {"epochs": 10}})
    # 10,000 images of 28 px: pretext 0.002 s an image + 0.0006 s an image and epoch (6 s an epoch)
    free = stage_seconds(config, 10_000, 28, ["images", "pretext", "neighbors"])
    assert free == pytest.approx({"images": 0.5, "pretext": 62.0, "neighbors": 5.0})
    budgeted = RunConfig.from_dict({**config.to_dict(), "time_budget": 30.0})
    cut = stage_seconds(budgeted, 10_000, 28, ["images", "pretext", "neighbors"])
    assert cut["pretext"] == pytest.approx(2.0 + 6.0 * 4)  # 30 - 5.5 s leaves 24.5 s: 4 epochs of 6 s


def test_a_frozen_pretrained_backbone_costs_one_pass_and_one_per_feature_bank(lite0_11ms):
    config = RunConfig.from_dict({"dataset": "x", "num_clusters": 2, "head_input": "features",
                                  "backbone": "efficientnet-lite0-imagenet", "pretrained_size": 64, "feature_views": 2,
                                  "pretext": {"epochs": 0}, "scan": {"epochs": 10}})
    seconds = stage_seconds(config, 1000, 32, ["pretext", "scan"])
    one_pass = 0.011 * (64 / 128) ** 2 * 1000  # 2.75 s
    assert seconds["pretext"] == pytest.approx(0.2 + one_pass)
    assert seconds["scan"] == pytest.approx(1000 * 10 * 4.5e-5 + 2 * one_pass)


@pytest.mark.parametrize("images, side, plan", [
    (600, 96, (128, 4)),       # 6.6 s a pass at 128 px: 4 banks and more would fit in 630 s
    (40_000, 96, (128, 0)),    # 440 s a pass: one fits in 0.7 x 900 s, a second does not
    (80_000, 96, (96, 0)),     # 880 s at 128 px is too much; 495 s at 96 px fits
    (200_000, 96, (64, 0)),    # 550 s at 64 px
    (5_000, 224, (160, 4)),    # 168 s a pass at 224 px (11 ms x (224/128)^2): 2 banks; 86 s at 160 px: all 4
    (1_000, 224, (224, 4)),    # 34 s a pass at 224 px: all 4 banks
    (5_000, 32, (128, 4)),     # small images run at 128 px, never more
])
def test_auto_sizes_a_frozen_backbone_to_the_budget(images, side, plan, lite0_11ms):
    assert pretrained_plan(pretrained_spec("efficientnet-lite0-imagenet"), images, side, 900.0) == plan


def test_auto_gives_colour_images_a_frozen_pretrained_backbone_and_honours_another_backbone(lite0_11ms):
    colour = make_config("/some/folder", 4, 600, 64, 3)
    assert (colour.backbone, colour.pretext.epochs, colour.pretrained_size, colour.feature_views,
            colour.time_budget) == ("efficientnet-lite0-imagenet", 0, 128, 4, 300.0)
    own = make_config("/some/folder", 4, 600, 64, 3, backbone="small-cnn")  # the user's choice: SimCLR trains it
    assert own.backbone == "small-cnn" and own.pretext.epochs > 0
    short = make_config("/some/folder", 4, 40_000, 64, 3, time_budget=400.0)
    # 247.5 s a pass at 96 px: one fits in 0.7 x 400 s
    assert (short.pretrained_size, short.feature_views, short.time_budget) == (96, 0, 400.0)
    with pytest.raises(ValueError, match="pretext epochs 0 .* needs a pretrained backbone"):
        make_config("/some/folder", 4, 600, 64, 3, backbone="small-cnn", pretext={"epochs": 0})
