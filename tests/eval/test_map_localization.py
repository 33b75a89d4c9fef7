"""Threshold-free localization metrics: hand-computed cases, and Quantus 0.6 image by image
(``normalise=False`` and ``abs`` set explicitly: its defaults rescale the whole batch by one max)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from onnxcam.eval import (
    boxes_to_masks,
    energy_pointing_game,
    pixel_auc,
    pointing_game,
    relevance_rank_accuracy,
    sparseness,
)
from onnxcam.eval import map_localization


def _masks() -> np.ndarray:
    masks = np.zeros((2, 5, 6), dtype=bool)
    masks[0, 1:3, 1:4] = True  # 6 pixels
    masks[1, 4, 5] = True  # 1 pixel, in the corner
    return masks


def test_doctests_run():
    assert doctest.testmod(map_localization).failed == 0


def test_pointing_game_hand_cases():
    masks = _masks()
    maps = np.zeros((2, 5, 6))
    maps[0, 2, 2] = 1.0  # peak inside
    maps[1, 0, 0] = 1.0  # peak at (0, 0), sqrt(4^2 + 5^2) = 6.403 px from the mask pixel (4, 5)
    assert pointing_game(maps, masks).tolist() == [True, False]
    assert pointing_game(maps, masks, tolerance=6.4).tolist() == [True, False]
    assert pointing_game(maps, masks, tolerance=6.41).tolist() == [True, True]
    tied = np.ones((2, 5, 6))  # every pixel is a maximum: any pixel in the mask is a hit
    assert pointing_game(tied, masks).tolist() == [True, True]


def test_energy_rank_auc_sparseness_hand_cases():
    masks = _masks()
    maps = np.zeros((2, 5, 6))
    maps[0, 1, 1], maps[0, 0, 0] = 3.0, 1.0
    maps[1, 4, 5], maps[1, 4, 4] = 0.5, 0.5
    np.testing.assert_allclose(energy_pointing_game(maps, masks), [0.75, 0.5])
    # Image 0: the 6 top pixels are 3.0 (in), 1.0 (out) and four zeros in row-major order (0, 1..4
    # of row 0: out); image 1: the single top pixel is (4, 4) by row-major order of the tie: out.
    np.testing.assert_allclose(relevance_rank_accuracy(maps, masks), [1 / 6, 0.0])
    # Image 1: its one positive ties with one of 29 negatives and beats the other 28.
    np.testing.assert_allclose(pixel_auc(maps, masks)[1], (28 + 0.5) / 29)
    # Gini: one non-zero pixel of n is (n - 1) / n; uniform is 0; all-zero is 0.
    one = np.zeros((1, 5, 6))
    one[0, 3, 3] = 2.0
    np.testing.assert_allclose(sparseness(one), [29 / 30])
    np.testing.assert_allclose(sparseness(np.ones((1, 5, 6))), [0.0], atol=1e-12)
    assert sparseness(np.zeros((1, 5, 6))).tolist() == [0.0]
    assert energy_pointing_game(np.zeros((2, 5, 6)), masks).tolist() == [0.0, 0.0]


def test_boxes_to_masks_inclusive():
    masks = boxes_to_masks([np.array([[1, 2, 1, 2]]), np.array([[0, 0, 1, 0], [4, 3, 5, 4]])], (5, 6))
    assert masks.shape == (2, 5, 6) and masks.dtype == bool
    assert masks[0].sum() == 1 and masks[0, 2, 1]
    assert masks[1].sum() == 2 + 4 and masks[1, 0, :2].all() and masks[1, 3:, 4:].all()
    with pytest.raises(ValueError, match="outside the 5x6 image"):
        boxes_to_masks([np.array([[0, 0, 6, 1]])], (5, 6))


def test_errors_name_the_problem():
    masks = _masks()
    with pytest.raises(ValueError, match="masks have shape"):
        pointing_game(np.zeros((2, 5, 5)), masks)
    empty = masks.copy()
    empty[1] = False
    with pytest.raises(ValueError, match=r"images \[1\] are empty"):
        energy_pointing_game(np.ones((2, 5, 6)), empty)
    with pytest.raises(ValueError, match="cover the whole image"):
        pixel_auc(np.ones((2, 5, 6)), np.ones((2, 5, 6), bool))
    with pytest.raises(ValueError, match="negative values"):
        energy_pointing_game(-np.ones((2, 5, 6)), masks)
    with pytest.raises(ValueError, match="NaN"):
        sparseness(np.full((1, 3, 3), np.nan))


@pytest.fixture(scope="module")
def quantus():
    return pytest.importorskip("quantus")


def _random_case(seed: int, n: int = 6, size: int = 24):
    """Continuous maps (no ties) and rectangular masks of varied size."""
    rng = np.random.default_rng(seed)
    maps = rng.random((n, size, size))
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        y0, x0 = rng.integers(0, size - 4, 2)
        masks[i, y0 : y0 + rng.integers(2, size - y0), x0 : x0 + rng.integers(2, size - x0)] = True
    # Put some peaks inside the masks so that the pointing game has hits and misses.
    for i in range(0, n, 2):
        y, x = np.argwhere(masks[i])[0]
        maps[i, y, x] = 2.0
    return maps, masks


def _quantus_scores(metric, maps, masks=None):
    n = len(maps)
    kwargs = dict(model=None, x_batch=np.zeros((n, 3, *maps.shape[1:])), y_batch=np.zeros(n, int), a_batch=maps[:, None])
    if masks is not None:
        kwargs["s_batch"] = masks[:, None].astype(float)
    return np.asarray(metric(channel_first=True, **kwargs), dtype=float)


@pytest.mark.parametrize("seed", [0, 1])
def test_equal_to_quantus(quantus, seed):
    maps, masks = _random_case(seed)
    options = dict(abs=False, normalise=False, disable_warnings=True)
    hits = pointing_game(maps, masks)
    assert hits.any() and not hits.all()
    np.testing.assert_array_equal(hits, _quantus_scores(quantus.PointingGame(**options), maps, masks))
    np.testing.assert_allclose(
        energy_pointing_game(maps, masks), _quantus_scores(quantus.RelevanceMassAccuracy(**options), maps, masks)
    )
    np.testing.assert_allclose(
        relevance_rank_accuracy(maps, masks), _quantus_scores(quantus.RelevanceRankAccuracy(**options), maps, masks)
    )
    np.testing.assert_allclose(pixel_auc(maps, masks), _quantus_scores(quantus.AUC(**options), maps, masks))
    # Quantus adds 1e-7 to every value before the Gini index.
    sparse = _quantus_scores(quantus.Sparseness(abs=True, normalise=False, disable_warnings=True), maps)
    np.testing.assert_allclose(sparseness(maps), sparse, rtol=1e-6)


def test_pixel_auc_with_ties_equals_scikit_learn():
    """Quantized maps (many ties) against scikit-learn's roc_auc_score, which Quantus' AUC uses."""
    from sklearn.metrics import roc_auc_score

    maps, masks = _random_case(2)
    maps = np.round(maps * 4) / 4
    expected = [roc_auc_score(mask.ravel(), m.ravel()) for m, mask in zip(maps, masks)]
    np.testing.assert_allclose(pixel_auc(maps, masks), expected)
