"""The emotion-AU prior table (POI table I): matrix, smoothing, targets from labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ufer.data import schema
from ufer.data.au_prior import (
    EYE_AUS,
    MOUTH_AUS,
    PRIOR_AUS,
    au_columns,
    au_targets,
    prior_matrix,
    smooth,
)

E8 = list(schema.EMOTIONS8)


def test_matrix_matches_poi_table_one():
    m = prior_matrix(E8)
    assert m.shape == (8, 13) and m.dtype == np.float32
    assert PRIOR_AUS == (1, 2, 4, 5, 6, 9, 10, 12, 14, 15, 17, 24, 26)
    assert EYE_AUS + MOUTH_AUS == PRIOR_AUS
    on = {c: [a for a, v in zip(PRIOR_AUS, m[i]) if v == 1] for i, c in enumerate(E8)}
    assert on == {"neutral": [], "happy": [6, 12, 26], "sad": [1, 4, 15, 17],
                  "surprise": [1, 2, 5, 26], "fear": [1, 4, 5, 26], "disgust": [9, 10, 17],
                  "anger": [4, 24], "contempt": [14]}
    assert m[E8.index("neutral")].sum() == 0
    assert m[E8.index("contempt")].tolist() == [float(a == 14) for a in PRIOR_AUS]
    assert set(np.unique(m)) == {0.0, 1.0}


def test_matrix_follows_the_given_class_and_au_order():
    m = prior_matrix(["anger", "happy"], aus=(24, 12, 28))
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 0]])  # AU28 is in no row
    with pytest.raises(ValueError, match=r"no row for \['other'\]"):
        prior_matrix(["happy", "other"])


def test_smoothing_values_by_hand():
    z = np.array([0.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(smooth(z, 0.1), [0.05, 0.95])
    np.testing.assert_allclose(smooth(z, 0.0), [0.0, 1.0])
    np.testing.assert_allclose(smooth(z, 1.0), [0.5, 0.5])
    torch.testing.assert_close(smooth(torch.tensor([1.0, 0.0]), 0.2), torch.tensor([0.9, 0.1]))
    with pytest.raises(ValueError):
        smooth(z, 1.5)


def test_targets_are_table_rows_of_the_labels():
    labels = np.array([E8.index("contempt"), E8.index("neutral"), E8.index("anger")])
    t = au_targets(labels, E8, eps=0.1)
    assert t.shape == (3, 13)
    expected_contempt = np.where(np.array(PRIOR_AUS) == 14, 0.95, 0.05)
    np.testing.assert_allclose(t[0], expected_contempt, rtol=1e-6)
    np.testing.assert_allclose(t[1], np.full(13, 0.05), rtol=1e-6)
    on = {PRIOR_AUS[k] for k in np.flatnonzero(t[2] > 0.5)}
    assert on == {4, 24}
    as_tensor = au_targets(torch.as_tensor(labels), E8, eps=0.1)
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_allclose(as_tensor.numpy(), t)
    with pytest.raises(ValueError, match="0..7"):
        au_targets(np.array([8]), E8)
    assert au_columns((1, 26)) == ["AU01", "AU26"]
