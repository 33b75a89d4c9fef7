"""train-synthetic's objectives: ACoL's loss and delta, multi-label BCE on the multi-object set,
and starting from another checkpoint's backbone."""

import pytest

torch = pytest.importorskip("torch")

from onnxcam.apps.synthetic_objectives import MultiLabel, objective_for  # noqa: E402
from onnxcam.apps.synthetic_training import (  # noqa: E402
    TrainingConfig,
    load_matching_weights,
    save_training_result,
    train_synthetic_model,
)
from onnxcam.eval.datasets.multi_object import MULTI_OBJECT_TEST_SEED  # noqa: E402
from onnxcam.export.synthetic_models import build_synthetic_model, checkpoint_dict  # noqa: E402


def test_multi_label_accuracy_needs_every_class_right_and_the_loss_is_bce():
    objective = MultiLabel()
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    logits = torch.tensor([[2.0, -1.0, 0.5], [1.0, 3.0, -2.0]])  # second image: class 0 wrongly present
    assert objective.correct(logits, targets) == 1
    assert objective.test_metrics(logits, targets) == {"label_accuracy": pytest.approx(100 * 5 / 6)}
    model = torch.nn.Identity()
    loss, _ = objective.loss(model, logits, targets)
    assert loss == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)))
    images, hot = objective.data(4, seed=1, image_size=96, num_classes=12)
    assert images.shape == (4, 96, 96, 3) and hot.shape == (4, 12) and (hot.sum(dim=1) >= 1).all()


def test_multilabel_run_tests_on_its_own_held_out_seed_and_acol_keeps_its_delta(tmp_path):
    config = TrainingConfig(arch="synthetic_multilabel", epochs=1, images_per_epoch=16, batch_size=8, test_images=8)
    result = train_synthetic_model(config, progress=False)
    assert result.test_seed == MULTI_OBJECT_TEST_SEED and "label_accuracy" in result.test_metrics
    assert '"test_label_accuracy"' in save_training_result(result, tmp_path / "m.pt").with_suffix(".json").read_text()
    acol = TrainingConfig(arch="synthetic_acol", epochs=1, images_per_epoch=8, batch_size=8, test_images=8, acol_delta=0.8)
    assert float(train_synthetic_model(acol, progress=False).model.delta) == pytest.approx(0.8)
    assert type(objective_for("synthetic_vgg")).__name__ == "SingleLabel"


def test_init_from_copies_the_shared_backbone(tmp_path):
    torch.manual_seed(0)
    resnet = build_synthetic_model("synthetic_resnet")
    torch.save(checkpoint_dict("synthetic_resnet", resnet, 96, tuple("abcdefghijkl")), tmp_path / "r.pt")
    acol = build_synthetic_model("synthetic_acol")
    names = load_matching_weights(acol, tmp_path / "r.pt")
    assert "layer3.conv2.weight" in names and not any(n.startswith(("fc", "classifier")) for n in names)
    torch.testing.assert_close(acol.layer3.conv2.weight, resnet.layer3.conv2.weight)
    with pytest.raises(ValueError, match="shares no weights"):
        load_matching_weights(torch.nn.Linear(2, 2), tmp_path / "r.pt")
