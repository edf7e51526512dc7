"""The distilled ImageNet prior: its training (a few steps, resuming, export) and its use as a prior."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from priors.distilled_imagenet import (
    DistilledGenerator,
    DistilledLatentImage,
    GeneratorConfig,
    load_distilled_generator,
)
from priorviz.render import RenderConfig, render
from priorviz.training.distill import (
    DEFAULT_CONFIG,
    AugmentConfig,
    RunConfig,
    TrainConfig,
    batch_statistics_kl,
    export_weights,
    feature_diversity_hinge,
    load_checkpoint,
    make_optimizer,
    start_generator_from,
    step_classes,
    train,
)
from priorviz.training.evaluate import within_class_spread
from priorviz.transforms import NO_TRANSFORMS

TINY = TrainConfig(
    seed=3,
    total_steps=4,
    classes_per_batch=4,
    warmup_steps=1,
    bf16_autocast=False,
    generator=GeneratorConfig(latent_size=16, class_code_size=16, widths=(32, 16, 16, 8, 8, 8), template_side=4),
    augment=AugmentConfig(input_sizes=(64,), input_size_weights=(1.0,)),
    run=RunConfig(checkpoint_every=1, log_every=1),
)


def test_the_shipped_config_parses_and_typos_are_refused(tmp_path: Path) -> None:
    config = TrainConfig.from_toml(DEFAULT_CONFIG)
    assert config.generator.num_classes == 1000 and config.total_steps > 0
    typo = tmp_path / "typo.toml"
    typo.write_text(DEFAULT_CONFIG.read_text().replace("[loss]\n", "[loss]\ncross_entropie = 1.0\n"))
    with pytest.raises(ValueError, match="cross_entropie"):
        TrainConfig.from_toml(typo)


def test_every_pass_over_the_steps_draws_every_class_once() -> None:
    drawn = torch.cat([step_classes(0, step, 16, 1000) for step in range(1000 // 16)])
    assert len(set(drawn.tolist())) == len(drawn) == 992


def test_batch_statistics_kl_matches_the_gaussian_kl_in_numpy() -> None:
    layer = nn.BatchNorm2d(3, eps=1e-3).eval()
    layer.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    layer.running_var.copy_(torch.tensor([1.0, 4.0, 0.25]))
    features = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.3
    x = features.double().numpy()
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)) + 1e-3
    running_mean, running_var = layer.running_mean.double().numpy(), layer.running_var.double().numpy() + 1e-3
    kl = 0.5 * (np.log(running_var / var) + (var + (mean - running_mean) ** 2) / running_var - 1)
    assert float(batch_statistics_kl([features], [layer])) == pytest.approx(kl.mean(), rel=1e-5)


def test_a_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path: Path) -> None:
    straight = tmp_path / "straight.safetensors"
    assert train(TINY, straight, tmp_path / "straight.jsonl", show_progress=False) == 4
    resumed = tmp_path / "resumed.safetensors"
    assert train(TINY, resumed, tmp_path / "resumed.jsonl", steps=2, show_progress=False) == 2
    assert train(TINY, resumed, tmp_path / "resumed.jsonl", show_progress=False) == 4

    weights = []
    for path in (straight, resumed):
        generator = DistilledGenerator(TINY.generator)
        step, _ = load_checkpoint(path, generator, make_optimizer(generator, TINY))
        assert step == 4
        weights.append(generator.state_dict())
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name
    logged = [json.loads(line) for line in (tmp_path / "resumed.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4]
    assert {"cross_entropy", "batch_statistics", "diversity", "total_variation", "loss"} <= set(logged[-1])


def test_cross_entropy_falls_when_training_on_few_classes(tmp_path: Path) -> None:
    """The loop learns: two classes, no other loss, 40 steps."""
    config = replace(
        TINY,
        total_steps=40,
        classes_per_batch=2,
        learning_rate=1e-2,
        class_code_learning_rate_scale=10.0,
        generator=replace(TINY.generator, num_classes=2),
        loss=replace(TINY.loss, batch_statistics=0.0, diversity=0.0, total_variation=0.0),
        run=RunConfig(checkpoint_every=40, log_every=5),
    )
    train(config, tmp_path / "ck.safetensors", tmp_path / "log.jsonl", show_progress=False)
    losses = [json.loads(line)["cross_entropy"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.75 * losses[0], losses


def test_exported_weights_load_as_a_prior_that_starts_at_the_class_and_raises_its_logit(tmp_path: Path, lite0) -> None:
    checkpoint = tmp_path / "ck.safetensors"
    train(TINY, checkpoint, tmp_path / "log.jsonl", steps=1, show_progress=False)
    weights = tmp_path / "weights.safetensors"
    export_weights(TINY, checkpoint, weights, batches=2)
    network = load_distilled_generator("cpu", path=weights)
    assert not network.training and not any(p.requires_grad for p in network.parameters())

    prior = DistilledLatentImage(
        2, 64, 64, generator=torch.Generator().manual_seed(0), network=network, clip=3.0, norm_penalty=1.0
    )
    prior.start_at_classes([1, None])
    assert torch.equal(prior.class_vector[0], network.class_codes.weight[1])
    assert prior().shape == (2, 3, 64, 64)

    single = DistilledLatentImage(
        1, 64, 64, generator=torch.Generator().manual_seed(0), network=network, clip=3.0, norm_penalty=1.0
    )
    result = render(lite0, "logit:1", single, size=64, config=RenderConfig(steps=12, seed=0, transforms=NO_TRANSFORMS))
    assert result.trace[-1, 0] > result.trace[0, 0]


def test_a_stop_request_saves_every_finished_step(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM (``should_stop``) between checkpoints still keeps the steps done."""
    config = replace(TINY, run=RunConfig(checkpoint_every=100, log_every=1))
    checks = iter(range(100))
    checkpoint = tmp_path / "ck.safetensors"
    assert (
        train(config, checkpoint, tmp_path / "log.jsonl", should_stop=lambda: next(checks) >= 2, show_progress=False)
        == 2
    )
    generator = DistilledGenerator(config.generator)
    assert load_checkpoint(checkpoint, generator, make_optimizer(generator, config))[0] == 2


def test_the_shipped_configs_checkpoint_fits_in_32_megabytes() -> None:
    """The checkpoint (weights and Adam's two moments, fp32) is committed for the next session to resume."""
    config = TrainConfig.from_toml(DEFAULT_CONFIG)
    parameters = sum(p.numel() for p in DistilledGenerator(config.generator).parameters())
    assert parameters * 4 * 3 < 32 * 2**20


def test_within_class_spread_matches_numpy_and_reads_zero_under_mode_collapse() -> None:
    images = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    flat = images.flatten(1).numpy()
    pairs = [(i, j) for i in range(6) for j in range(6) if i != j]
    distance = {(i, j): np.abs(flat[i] - flat[j]).mean() for i, j in pairs}
    same = np.mean([d for (i, j), d in distance.items() if labels[i] == labels[j]])
    different = np.mean([d for (i, j), d in distance.items() if labels[i] != labels[j]])
    assert within_class_spread(images, labels) == pytest.approx(same / different, rel=1e-5)
    collapsed = images[[0, 0, 2, 2, 4, 4]]
    assert within_class_spread(collapsed, labels) == 0.0


def test_feature_diversity_hinge_matches_numpy() -> None:
    random = torch.Generator().manual_seed(1)
    features, latents = torch.rand(6, 10, generator=random), torch.randn(6, 4, generator=random)
    f, z = features.double().numpy(), latents.double().numpy()
    first, second = f[:3], f[3:]
    relative = np.abs(first - second).mean(axis=1) / ((np.abs(first).mean(axis=1) + np.abs(second).mean(axis=1)) / 2)
    expected = np.maximum(0.0, 0.8 - relative / np.abs(z[:3] - z[3:]).mean(axis=1)).mean()
    assert float(feature_diversity_hinge(features, latents, 0.8)) == pytest.approx(expected, rel=1e-5)
    assert float(feature_diversity_hinge(features, latents, 0.0)) == 0.0


def test_a_second_phase_starts_from_another_runs_generator_and_logs_its_feature_term(tmp_path: Path) -> None:
    first = tmp_path / "first.safetensors"
    train(TINY, first, tmp_path / "first.jsonl", steps=2, show_progress=False)
    config_file = tmp_path / "phase2.toml"
    config_file.write_text('start_from = "first.safetensors"\n')
    assert TrainConfig.from_toml(config_file).start_from == str(tmp_path / "first.safetensors")
    phase2 = replace(
        TINY,
        start_from=str(first),
        total_steps=1,
        loss=replace(TINY.loss, feature_diversity=1.0, feature_diversity_margin=5.0),
    )
    started, fresh = DistilledGenerator(TINY.generator), DistilledGenerator(TINY.generator)
    start_generator_from(first, started)
    load_checkpoint(first, fresh, make_optimizer(fresh, TINY))
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in started.state_dict().items())
    assert train(phase2, tmp_path / "phase2.safetensors", tmp_path / "phase2.jsonl", show_progress=False) == 1
    logged = json.loads((tmp_path / "phase2.jsonl").read_text().splitlines()[-1])
    assert logged["feature_diversity"] > 0  # a margin of 5 is far from met
    with pytest.raises(FileNotFoundError, match="start_from"):
        start_generator_from(tmp_path / "missing.safetensors", started)
