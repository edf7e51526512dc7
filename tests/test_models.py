"""The model registry, the embedded EfficientNet-Lite rebuild, and user models on tiny real files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from priorviz.models import (
    LOGITS,
    ModelNotFoundError,
    ModelWeightsUnavailableError,
    TargetModel,
    UnknownLayerError,
    default_model_name,
    get_model,
    list_models,
)
from priorviz.models.checkpoint import CheckpointError


def foolbox_imagenet_photos() -> list[tuple[Path, int]]:
    """Foolbox's 20 labelled ImageNet photographs (file name ends in the label)."""
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "foolbox's data is installed by make setup"
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    photos = sorted(folder.glob("imagenet_*.jpg"))
    return [(path, int(path.stem.rsplit("_", 1)[1])) for path in photos]


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """Resize the short side to size/0.875, centre-crop to size: the usual ImageNet evaluation."""
    image = image.convert("RGB")
    scale = round(size / 0.875) / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)[None]


def test_registry_lists_the_embedded_models() -> None:
    names = [entry.name for entry in list_models()]
    assert names[0] == default_model_name() == "efficientnet_lite0"
    assert "efficientnet_lite1" in names
    assert all(entry.description for entry in list_models())


def test_lite0_layers_match_the_published_shapes(lite0: TargetModel) -> None:
    shapes = {layer.name: (layer.channels, layer.height) for layer in lite0.layers}
    expected = {
        "blocks.0": (16, 112),
        "blocks.1": (24, 56),
        "blocks.2": (24, 56),
        "blocks.3": (40, 28),
        "blocks.5": (80, 14),
        "blocks.7": (80, 14),
        "blocks.8": (112, 14),
        "blocks.10": (112, 14),
        "blocks.11": (192, 7),
        "blocks.14": (192, 7),
        "blocks.15": (320, 7),
        "head": (1280, 7),
        LOGITS: (1000, 1),
    }
    for name, shape in expected.items():
        assert shapes[name] == shape, name
    assert len([name for name in shapes if name.startswith("blocks.")]) == 16
    assert lite0.input_size == 224 and lite0.num_classes == 1000
    assert lite0.class_names[130] == "flamingo"


def test_lite0_classifies_foolbox_photographs(lite0: TargetModel) -> None:
    photos = foolbox_imagenet_photos()
    assert len(photos) == 20
    batch = torch.cat([preprocess(Image.open(path), 224) for path, _ in photos])
    predicted = lite0.predict(batch).argmax(dim=1).tolist()
    correct = sum(int(p == label) for p, (_, label) in zip(predicted, photos, strict=True))
    assert correct >= 15, f"top-1 {correct}/20"


@pytest.mark.parametrize("model_fixture", ["lite0", "lite1"])
def test_chelsea_is_a_cat(model_fixture: str, request: pytest.FixtureRequest) -> None:
    from skimage import data

    model: TargetModel = request.getfixturevalue(model_fixture)
    image = preprocess(Image.fromarray(data.chelsea()), model.input_size)
    top = int(model.predict(image).argmax())
    assert 281 <= top <= 285, f"{model.name} says {model.class_names[top]!r}"


def test_forward_stops_at_the_deepest_needed_layer(lite0: TargetModel) -> None:
    ran: list[str] = []
    network = lite0.folded_module  # listed layers only: the batch-norm-folded copy runs
    handles = [network.blocks[i].register_forward_hook(lambda *_, i=i: ran.append(i)) for i in range(16)]
    try:
        acts = lite0.activations(torch.rand(1, 3, 64, 64), ["blocks.3", "blocks.1"])
    finally:
        for handle in handles:
            handle.remove()
    assert set(acts) == {"blocks.3", "blocks.1"}
    assert ran == [0, 1, 2, 3]
    assert lite0.hook_count() == 0


def test_folded_batchnorm_gives_the_same_listed_layers(lite0: TargetModel) -> None:
    """Listed layers come from the folded copy; anything else (batch-norm inputs) from the original."""
    images = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    names = ["stem", "blocks.3", "blocks.8", "head", LOGITS]
    folded = lite0.activations(images, names)
    normalized = lite0.normalize(images).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = lite0.module(normalized)
    torch.testing.assert_close(folded[LOGITS], reference, rtol=1e-4, atol=1e-4)
    unfolded = lite0.activations(images, ["blocks.8", "blocks.8.bn1/input"])
    torch.testing.assert_close(folded["blocks.8"], unfolded["blocks.8"], rtol=1e-4, atol=1e-4)
    assert unfolded["blocks.8.bn1/input"].shape[1] == 80 * 6  # blocks.8 expands its 80 inputs sixfold
    bn = lite0.module.blocks[8].bn1  # the original's batch norm really ran: its input is not normalized
    assert not torch.allclose(unfolded["blocks.8.bn1/input"].mean(dim=(0, 2, 3)), torch.zeros_like(bn.running_mean))
    assert lite0.hook_count() == 0


def test_module_inputs_and_unknown_layers(lite0: TargetModel) -> None:
    acts = lite0.activations(torch.rand(1, 3, 32, 32), ["blocks.2.bn1/input", "blocks.2.bn1"])
    assert acts["blocks.2.bn1/input"].shape == acts["blocks.2.bn1"].shape
    with pytest.raises(UnknownLayerError, match=re.escape("no layer 'blocks.99'")):
        lite0.activations(torch.rand(1, 3, 32, 32), ["blocks.99"])
    with pytest.raises(UnknownLayerError, match=re.escape("blocks.0")):
        lite0.layer("nope")
    assert lite0.hook_count() == 0


def test_unknown_model_is_not_found() -> None:
    with pytest.raises(ModelNotFoundError, match="no_such_net"):
        get_model("no_such_net")


def test_torchvision_weights_from_the_torch_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real torchvision loading path, fed a cache file that the test writes itself."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.SqueezeNet1_1_Weights.DEFAULT
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.squeezenet1_1(weights=None).eval()
    torch.save(reference.state_dict(), cache / Path(weights.url).name)

    model = get_model("squeezenet1_1", device="cpu")
    assert model.class_names[0] == "tench" and model.input_size == 224
    assert [layer.name for layer in model.layers][:2] == ["features.0", "features.1"]
    images = torch.rand(2, 3, 224, 224)
    expected = reference(model.normalize(images)).softmax(dim=1)
    torch.testing.assert_close(model.predict(images), expected)


def test_torchvision_weights_missing_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelWeightsUnavailableError, match=r"mobilenet_v3_small.*not on disk"):
        get_model("mobilenet_v3_small")


def test_local_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(weights=None, num_classes=4).eval()
    path = tmp_path / "birds.pt"
    torch.save(
        {
            "arch": "squeezenet1_1",
            "state_dict": net.state_dict(),
            "class_names": ["a", "b", "c", "d"],
            "input_size": 96,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        },
        path,
    )
    model = get_model(f"checkpoint:{path}", device="cpu")
    assert model.class_names == ("a", "b", "c", "d") and model.input_size == 96
    images = torch.rand(1, 3, 96, 96)
    torch.testing.assert_close(model.predict(images), net(images * 2 - 1).softmax(dim=1))


def test_bad_checkpoints_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        get_model(f"checkpoint:{tmp_path / 'missing.pt'}")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        get_model(f"checkpoint:{tmp_path / 'junk.pt'}")
    torch.save({"state_dict": {}}, tmp_path / "noarch.pt")
    with pytest.raises(CheckpointError, match="'arch' and 'state_dict'"):
        get_model(f"checkpoint:{tmp_path / 'noarch.pt'}")


def test_models_cached_per_device_and_dtype(lite0: TargetModel) -> None:
    assert get_model("efficientnet_lite0", device="cpu") is lite0
    half = get_model("efficientnet_lite0", device="cpu", dtype=torch.bfloat16)
    assert half is not lite0 and half.dtype == torch.bfloat16 and lite0.dtype == torch.float32
    assert half.predict(torch.rand(1, 3, 64, 64)).dtype == torch.float32
