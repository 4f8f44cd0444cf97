"""The packed Isolation Forest scores exactly as scikit-learn's, at a fraction of the cost."""

import pickle

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from obslab.ml.ddos.forest import PackedForest


@pytest.mark.parametrize("max_samples, seed", [(512, 0), (64, 1), (3, 2), (1, 3)])
def test_packed_scores_equal_scikit_learns_to_the_last_bit(max_samples, seed):
    rng = np.random.default_rng(seed)
    training = rng.normal(size=(2000, 9))
    forest = IsolationForest(n_estimators=50, max_samples=max_samples, random_state=seed).fit(training)
    rows = np.vstack([rng.normal(size=(300, 9)), rng.normal(size=(30, 9)) * 6, training[:20]])
    np.testing.assert_array_equal(PackedForest(forest).score_samples(rows), forest.score_samples(rows))


def test_a_forest_that_subsamples_features_is_refused():
    forest = IsolationForest(n_estimators=5, max_features=0.5, random_state=0).fit(np.ones((50, 4)) * np.arange(4))
    with pytest.raises(ValueError, match="max_features=1.0"):
        PackedForest(forest)


def test_a_model_is_saved_without_its_packed_copy_and_scores_the_same_after_loading():
    from obslab.ml.ddos.features import FEATURE_NAMES
    from obslab.ml.ddos.model import DDoSModel

    rng = np.random.default_rng(3)
    normal = rng.normal(size=(400, len(FEATURE_NAMES))) * 0.1
    model = DDoSModel.train(normal, calibration_rows=normal[:100] * 1.1,
                            calibration_attacks=normal[:100] + 2.0)
    before = model.scores(normal[:10] + 1.0)
    assert "packed_forest" in model.__dict__
    loaded = pickle.loads(pickle.dumps(model))
    assert "packed_forest" not in loaded.__dict__
    np.testing.assert_array_equal(loaded.scores(normal[:10] + 1.0), before)
