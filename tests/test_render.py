"""The render loop on the real embedded model: it raises the objective, reproduces, cancels cleanly."""

from __future__ import annotations

import pytest
import torch

from priors.pixel import PixelImage
from priorviz.models import TargetModel
from priorviz.objectives import parse_objective
from priorviz.render import RenderCancelled, RenderConfig, StepEvent, render
from priorviz.seeding import make_generator
from priorviz.transforms import NO_TRANSFORMS, Jitter, Pad, ScaleRotate, standard_transforms


def test_mid_layer_channel_rises_fivefold_in_64_steps(lite0: TargetModel) -> None:
    result = render(lite0, parse_objective("blocks.8:17"), config=RenderConfig(steps=64, seed=0))
    first, final = result.trace[0].item(), result.values.item()
    assert first > 0
    assert final >= 5 * first, f"{first:.3f} -> {final:.3f}"
    assert result.images.shape == (1, 3, 224, 224)
    assert result.images.min() >= 0 and result.images.max() <= 1


def test_same_seed_same_image_other_seed_other_image(lite0: TargetModel) -> None:
    config = RenderConfig(steps=6, seed=11)
    objective = parse_objective("blocks.5:3")
    first = render(lite0, objective, size=96, config=config)
    second = render(lite0, objective, size=96, config=config)
    other = render(lite0, objective, size=96, config=RenderConfig(steps=6, seed=12))
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.trace, second.trace)
    assert not torch.equal(first.images, other.images)


def test_progress_snapshots_and_batch_targets(lite0: TargetModel) -> None:
    events: list[StepEvent] = []
    result = render(
        lite0,
        parse_objective("blocks.3:0..2"),
        batch=3,
        size=64,
        config=RenderConfig(steps=5, snapshot_steps=(2, 5)),
        progress=events.append,
    )
    assert [event.step for event in events] == [1, 2, 3, 4, 5]
    assert all(event.values.shape == (3,) and event.total_steps == 5 for event in events)
    assert [event.step for event in events if event.images is not None] == [2, 5]
    assert set(result.snapshots) == {2, 5} and result.snapshots[5].shape == (3, 3, 64, 64)
    assert result.trace.shape == (5, 3)


def test_a_streaming_caller_keeps_no_snapshot(lite0: TargetModel) -> None:
    events: list[StepEvent] = []
    result = render(
        lite0,
        parse_objective("blocks.3:0"),
        size=32,
        config=RenderConfig(steps=2, snapshot_steps=(1, 2)),
        progress=events.append,
        keep_snapshots=False,
    )
    assert [event.images.shape for event in events] == [(1, 3, 32, 32)] * 2
    assert result.snapshots == {}


def test_cancel_between_steps_leaves_no_hook(lite0: TargetModel) -> None:
    seen: list[int] = []
    with pytest.raises(RenderCancelled) as info:
        render(
            lite0,
            parse_objective("blocks.3:1"),
            size=64,
            config=RenderConfig(steps=100),
            progress=lambda event: seen.append(event.step),
            should_stop=lambda: len(seen) >= 3,
        )
    assert info.value.step == 3 and seen == [1, 2, 3]
    assert lite0.hook_count() == 0


def test_failing_job_leaves_no_hook(lite0: TargetModel) -> None:
    with pytest.raises(IndexError):
        render(lite0, parse_objective("blocks.3:999"), size=64, config=RenderConfig(steps=2))
    assert lite0.hook_count() == 0


def test_pixel_prior_without_transforms_and_regularizer(lite0: TargetModel) -> None:
    param = PixelImage(1, 64, 64, generator=make_generator(0))
    result = render(
        lite0,
        parse_objective("logit:1"),
        param,
        config=RenderConfig(steps=10, transforms=NO_TRANSFORMS),
        regularizer=-0.1 * parse_objective("layer:blocks.2"),
    )
    assert result.values.item() > result.trace[0].item()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="steps"):
        RenderConfig(steps=0)
    with pytest.raises(ValueError, match="snapshot steps"):
        RenderConfig(steps=4, snapshot_steps=(5,))
    with pytest.raises(ValueError, match="learning_rate"):
        RenderConfig(learning_rate=-1.0)


def test_standard_transforms_are_lucids_and_seeded() -> None:
    transforms = standard_transforms()
    pad, jitter, scale_rotate, final_jitter = transforms.transforms
    assert pad == Pad(12, 0.5) and jitter == Jitter(8) and final_jitter == Jitter(4)
    assert isinstance(scale_rotate, ScaleRotate)
    assert scale_rotate.scales == pytest.approx([0.90, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.10])
    assert scale_rotate.angles == tuple(range(-10, 11))
    images = torch.rand(2, 3, 32, 32)
    first = transforms(images, make_generator(5))
    assert torch.equal(first, transforms(images, make_generator(5)))
    side = 32 + 24 - 8
    assert min(round(side * 0.9), round(side * 1.1)) - 4 <= first.shape[-1] <= round(side * 1.1) - 4


def test_jitter_and_pad_do_what_they_say() -> None:
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    padded = Pad(2, 0.5)(images, make_generator(0))
    assert padded.shape[-1] == 10 and padded[0, 0, 0, 0] == 0.5
    cropped = Jitter(2)(images, make_generator(0))
    assert cropped.shape[-2:] == (4, 4)
    assert ScaleRotate((1.0,), (0.0,))(images, make_generator(0)) is images
