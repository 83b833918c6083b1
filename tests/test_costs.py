"""The cost model behind the ETA and auto's time budget, on hand-worked numbers."""
import pytest

from scan_core import costs, presets
from scan_core.config import REFERENCE_CPU, Hardware, RunConfig
from scan_core.costs import fit_epochs, stage_seconds
from scan_core.presets import colour_backbone, make_config, pretrained_plan, published_simclr
from scan_core.pretrained import pretrained_spec


@pytest.fixture
def lite0_11ms(monkeypatch):
    """EfficientNet-Lite0 at 11 ms an image at 128 px (its table entry is at its own 224 px), so
    that the plans below can be worked by hand whatever the measured table says."""
    monkeypatch.setitem(costs.PRETRAINED_COSTS["cpu"], "efficientnet-lite0-imagenet", 0.011 * (224 / 128) ** 2)


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
    assert seconds["scan"] == pytest.approx(1000 * 10 * 4.5e-5 + 10 * 0.3 + 2 * one_pass)  # 0.3 s an epoch


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


# Planning for the device a run trains on: the same images and budget on the 2-core CPU and on a GPU.
LITE0, VITS14 = pretrained_spec("efficientnet-lite0-imagenet"), pretrained_spec("dinov2-vits14")


def test_a_gpu_pays_for_the_foundation_model_that_the_cpu_cannot_run_in_the_budget():
    # 20,000 images of 224 px, 300 s: DINOv2 ViT-S/14 takes 0.12 s an image on the CPU (2,400 s a
    # pass, over 0.7 x 300 s) and 1.6e-4 s on the reference GPU (3.2 s a pass: 4 banks fit)
    on_cpu = colour_backbone(20_000, 224, 300.0, [VITS14, LITE0], REFERENCE_CPU)
    on_gpu = colour_backbone(20_000, 224, 300.0, [VITS14, LITE0], Hardware("cuda", name="NVIDIA H100"))
    assert on_cpu[0] == "efficientnet-lite0-imagenet" and "no pretrained backbone on this machine fits" in on_cpu[1]
    assert on_gpu[0] == "dinov2-vits14" and "on NVIDIA H100" in on_gpu[1]
    assert pretrained_plan(VITS14, 20_000, 224, 300.0, Hardware("cuda")) == (224, 4)


def test_the_measured_speed_of_the_gpu_scales_the_plan():
    # a GPU measured 100 times slower than the reference one: ViT-S/14 320 s a pass, too slow;
    # Lite0 0.0098 s an image at 224 px: 196 s (1 pass), 100 s at 160 px (2), 64 s at 128 px (3: 2 banks)
    slow = Hardware("cuda", speed=0.01)
    assert colour_backbone(20_000, 224, 300.0, [VITS14, LITE0], slow)[0] == "efficientnet-lite0-imagenet"
    assert pretrained_plan(LITE0, 20_000, 224, 300.0, slow) == (128, 2)


def test_the_gpu_trains_the_heads_faster_in_the_estimate():
    config = RunConfig.from_dict({"dataset": "x", "num_clusters": 2, "scan": {"epochs": 10}})
    gpu = RunConfig.from_dict({**config.to_dict(), "hardware": {"kind": "cuda", "speed": 2.0}})
    # and 0.3 s an epoch (its checkpoint, HEAD_EPOCH_SECONDS) that no GPU speeds up
    assert stage_seconds(config, 1000, 32, ["scan"])["scan"] == pytest.approx(1000 * 10 * 4.5e-5 + 10 * 0.3)
    assert stage_seconds(gpu, 1000, 32, ["scan"])["scan"] == pytest.approx(1000 * 10 * 4.5e-5 / (60 * 2) + 10 * 0.3)


@pytest.mark.parametrize("images, side, budget, hardware, present, epochs", [
    # one epoch of CIFAR ResNet-18 SimCLR on 50,000 images of 32 px: 6e-4 x 12 x (32/28)^2 x 50,000 s
    # on the CPU (470 s), 60 times less on the reference GPU (7.84 s): 0.7 x 3,600 s hold 321 epochs
    (50_000, 32, 3600.0, Hardware("cuda"), [LITE0], 321),
    (50_000, 32, 36_000.0, Hardware("cuda"), [LITE0], 500),   # never more than the paper's 500
    (50_000, 32, 3600.0, REFERENCE_CPU, [LITE0], None),       # 5 epochs on the CPU: too few
    (50_000, 32, 300.0, Hardware("cuda"), [LITE0], None),     # 26 epochs in the default budget: too few
    (50_000, 32, 3600.0, Hardware("cuda"), [VITS14, LITE0], None),  # a foundation model is stronger
    (5_000, 32, 3600.0, Hardware("cuda"), [LITE0], None),     # too few images to learn from
    (50_000, 128, 36_000.0, Hardware("cuda"), [LITE0], None),  # larger than STL's 96 px
])
def test_simclr_as_published_where_the_budget_on_the_device_pays_for_it(images, side, budget, hardware,
                                                                        present, epochs):
    plan = published_simclr(images, side, budget, hardware, present)
    assert (plan and plan["pretext"]["epochs"]) == epochs
    if epochs:
        assert (plan["backbone"], plan["pretext"]["batch_size"], plan["pretext"]["temperature"]) == (
            "resnet18-cifar", 512, 0.1)
        assert plan["note"].startswith(f"SimCLR as published (CIFAR ResNet-18, {epochs} epochs")


def test_auto_on_a_gpu_box_plans_simclr_and_records_the_hardware(monkeypatch):
    monkeypatch.setattr(presets, "present_backbones", lambda: [LITE0])
    h100 = Hardware("cuda", speed=1.5, name="NVIDIA H100")
    config = make_config("/some/folder", 10, 50_000, 32, 3, time_budget=3600.0, hardware=h100)
    assert (config.backbone, config.pretext.epochs, config.hardware) == ("resnet18-cifar", 482, h100)  # 2,520 s / (7.84 s / 1.5)
    assert RunConfig.from_dict(config.to_dict()) == config
    laptop = make_config("/some/folder", 10, 50_000, 32, 3, time_budget=3600.0)
    assert (laptop.backbone, laptop.hardware) == ("efficientnet-lite0-imagenet", REFERENCE_CPU)


def test_hardware_is_checked():
    with pytest.raises(ValueError, match="kind must be one of cpu, cuda; got 'tpu'"):
        Hardware("tpu")
    with pytest.raises(ValueError, match="speed must be positive"):
        Hardware("cuda", speed=0.0)
