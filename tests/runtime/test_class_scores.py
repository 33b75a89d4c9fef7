"""Softmax and top-k classes, on hand-computed cases."""

import numpy as np

from onnxcam.runtime.class_scores import class_name, softmax, top_classes


def test_softmax_matches_the_definition_and_survives_large_logits():
    logits = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0]])
    np.testing.assert_allclose(softmax(logits), [[0.25, 0.75], [0.5, 0.5]])


def test_top_classes_names_and_orders():
    logits = np.log(np.array([[0.2, 0.5, 0.3]]))
    [[(first, p_first), (second, p_second)]] = top_classes(logits, 2, ("cat", "dog", "car"))
    assert (first, second) == ("1 dog", "2 car")
    np.testing.assert_allclose([p_first, p_second], [0.5, 0.3])
    assert [name for name, _ in top_classes(logits, 1)[0]] == ["class 1"]
    assert class_name(0, None) == "class 0"
