"""``onnxcam train-synthetic``: the two synthetic-set models, a tiny training run, checkpoints."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from onnxcam.eval.datasets import make_synthetic_dataset  # noqa: E402
from onnxcam.eval.datasets.synthetic import SYNTHETIC_TEST_SEED  # noqa: E402
from onnxcam.export.synthetic_models import (  # noqa: E402
    SYNTHETIC_ARCHITECTURES,
    build_synthetic_model,
    load_synthetic_checkpoint,
    synthetic_preprocessing,
)
from onnxcam.apps.synthetic_training import (  # noqa: E402
    TrainingConfig,
    epoch_seed,
    images_to_tensor,
    save_training_result,
    train_synthetic_model,
)
from onnxcam.runtime.inputs import preprocess_images  # noqa: E402


CLASSIFIERS = sorted(name for name, arch in SYNTHETIC_ARCHITECTURES.items() if arch.target == "logit")


@pytest.mark.parametrize("arch", CLASSIFIERS)
def test_target_layer_is_a_12x12_map_and_only_the_resnets_have_a_gap_head(arch):
    from onnxcam.export.gradient_graph import find_cam_classifier

    torch.manual_seed(0)
    model = build_synthetic_model(arch).eval()
    captured = {}
    layer = dict(model.named_modules())[SYNTHETIC_ARCHITECTURES[arch].target_layer]
    layer.register_forward_hook(lambda module, inputs, output: captured.__setitem__("a", output))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 96, 96))
    assert logits.shape == (2, 12)
    assert captured["a"].shape == (2, 128, 12, 12)
    head = find_cam_classifier(model, captured["a"], logits)
    assert (head is not None) == (arch in ("synthetic_resnet", "synthetic_multilabel"))


def test_training_input_is_the_runtime_preprocessing():
    data = make_synthetic_dataset(3, seed=5, image_size=96)
    preprocessing = synthetic_preprocessing(96)
    ours = images_to_tensor(data.images, preprocessing).numpy()
    runtime = preprocess_images(list(data.images), preprocessing)
    np.testing.assert_allclose(ours, runtime, atol=1e-5)


def test_training_seeds_never_touch_the_test_split():
    assert all(epoch_seed(seed, e) != SYNTHETIC_TEST_SEED for seed in range(50) for e in range(200))


@pytest.mark.parametrize("arch", sorted(SYNTHETIC_ARCHITECTURES))
def test_one_epoch_smoke_run_saves_a_checkpoint_that_reloads(arch, tmp_path):
    config = TrainingConfig(arch=arch, epochs=1, images_per_epoch=32, batch_size=16, test_images=16)
    result = train_synthetic_model(config, progress=False)
    assert len(result.epoch_losses) == 1 and np.isfinite(result.epoch_losses[0])
    assert 0.0 <= result.test_accuracy <= 100.0
    path = save_training_result(result, tmp_path / f"{arch}.pt", command="onnxcam train-synthetic ...")
    record = (tmp_path / f"{arch}.json").read_text()
    assert '"test_accuracy"' in record and '"command"' in record
    loaded = load_synthetic_checkpoint(path)
    assert loaded.arch.name == arch and len(loaded.class_names) == 12
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), result.model.eval()(x))


def test_a_second_run_with_the_same_config_gives_the_same_weights():
    config = TrainingConfig(arch="synthetic_resnet", epochs=1, images_per_epoch=16, batch_size=8, test_images=8)
    first = train_synthetic_model(config, progress=False).model.state_dict()
    second = train_synthetic_model(config, progress=False).model.state_dict()
    for key in first:
        torch.testing.assert_close(first[key], second[key])


def test_bad_names_and_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic architecture"):
        build_synthetic_model("resnet18")
    with pytest.raises(ValueError, match="multiple of 16"):
        build_synthetic_model("synthetic_vgg", image_size=100)
    with pytest.raises(FileNotFoundError):
        load_synthetic_checkpoint(tmp_path / "missing.pt")


def test_each_arch_trains_by_its_own_recipe_unless_told_otherwise():
    resnet = TrainingConfig.for_arch("synthetic_resnet")
    assert (resnet.epochs, resnet.images_per_epoch, resnet.batch_size, resnet.learning_rate) == (5, 4000, 32, 4e-3)
    assert TrainingConfig.for_arch("synthetic_vgg") == TrainingConfig(arch="synthetic_vgg")
    told = TrainingConfig.for_arch("synthetic_resnet", epochs=1, batch_size=None, seed=3)
    assert (told.epochs, told.batch_size, told.seed) == (1, 32, 3)
    with pytest.raises(ValueError, match="synthetic_vgg"):
        TrainingConfig.for_arch("synthetic_alexnet")
