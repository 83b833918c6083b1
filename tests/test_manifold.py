"""The manifold stage's two functions: a UMAP embedding that keeps groups apart, and new points
placed beside it from their nearest training points (issue 12, item 1)."""
import numpy as np
import pytest

from scan_core.data.run_metrics import RunMetrics
from scan_core.data.rundir import final_stage, planned_stages
from scan_core.method.manifold import extend_manifold, fit_manifold


def test_new_points_take_the_similarity_weighted_mean_of_their_nearest_training_points():
    base = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    embedding = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    new = np.array([[1.0, 1.0],     # cosine 0.7071 to the first two, -0.7071 to the third (floored)
                    [2.0, 0.0]])    # the first training point itself (scaled): its own coordinates
    placed = extend_manifold(base, embedding, new, k=3)
    w = np.array([np.sqrt(0.5), np.sqrt(0.5), 1e-6])
    expected_first = (w[0] * embedding[0] + w[1] * embedding[1] + w[2] * embedding[2]) / w.sum()
    np.testing.assert_allclose(placed[0], expected_first, atol=1e-4)
    np.testing.assert_array_equal(placed[1], embedding[0])


def test_placing_beside_many_training_points_searches_a_graph_and_lands_where_exact_search_does():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    base = centres[rng.integers(0, 30, 2000)] + 0.3 * rng.normal(size=(2000, 16))
    embedding = rng.normal(size=(2000, 2)).astype(np.float32)
    new = base[rng.integers(0, 2000, 9000)] + 0.1 * rng.normal(size=(9000, 16))  # two batches of queries
    exact = extend_manifold(base, embedding, new)
    graph = extend_manifold(base, embedding, new, exact_limit=0)  # HNSW
    same = np.isclose(graph, exact, atol=1e-5).all(1).mean()
    assert same > 0.99, same  # 1.0 measured: 256 candidates among 2,000 points
    assert np.allclose(extend_manifold(base, embedding, base[:50], exact_limit=0), embedding[:50])


def test_shapes_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        extend_manifold(np.zeros((3, 2)), np.zeros((2, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="manifold dims"):
        fit_manifold(np.random.default_rng(0).normal(size=(20, 5)), dims=1)


def test_the_manifold_keeps_three_groups_apart():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 20)) * 6
    groups = np.repeat(np.arange(3), 60)
    points = centres[groups] + rng.normal(size=(180, 20))
    embedded = fit_manifold(points, dims=4, seed=0)
    assert embedded.shape == (180, 4) and embedded.dtype == np.float32
    # every point's nearest embedded neighbour (brute force) lies in its own group
    distances = ((embedded[:, None] - embedded[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert (groups[distances.argmin(1)] == groups).all()


def test_optional_stages_follow_their_config_keys():
    names = lambda config: [stage.name for stage in planned_stages(config)]
    assert names({"manifold_dims": 10, "umap": True}) == ["images", "pretext", "manifold", "neighbors", "scan",
                                                           "selflabel", "projection"]
    assert names({"manifold_dims": 0, "umap": False}) == ["images", "pretext", "neighbors", "scan", "selflabel"]


def test_the_result_stage_is_the_one_metrics_name_when_it_finished():
    assert final_stage(RunMetrics({"final": {"stage": "scan"}}), ("scan", "selflabel")) == "scan"
    assert final_stage(RunMetrics(), ("scan", "selflabel")) == "selflabel"
    assert final_stage(RunMetrics({"final": {"stage": "selflabel"}}), ("scan",)) == "scan"
    assert final_stage(RunMetrics(), ()) is None


def knn_label_accuracy(points, labels, k=5):
    """Leave-one-out k-NN vote in ``points`` (brute force): how well a map keeps its neighbourhoods."""
    distances = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    votes = labels[np.argsort(distances, 1)[:, :k]]
    return float(np.mean([np.bincount(v).argmax() == y for v, y in zip(votes, labels)]))


@pytest.fixture(scope="module")
def digits_pca():
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    data = load_digits()
    return PCA(20, random_state=0).fit_transform(data.data).astype(np.float32), data.target


def test_a_map_fitted_on_a_sample_places_the_rest_about_as_well_as_a_full_fit(digits_pca, monkeypatch):
    import scan_core.method.manifold as manifold
    points, labels = digits_pca
    full = fit_manifold(points, dims=2, seed=0)
    monkeypatch.setattr(manifold, "PLACE_CHUNK", 400)  # the 1,197 placed points go in three chunks
    sampled = fit_manifold(points, dims=2, seed=0, sample=600)
    fitted = np.sort(np.random.default_rng(0).choice(len(points), 600, replace=False))
    placed = np.setdiff1d(np.arange(len(points)), fitted)
    assert sampled.shape == (1797, 2) and np.isfinite(sampled).all()
    # 5-NN label votes keep nearly what the full fit keeps (measured: 0.950 fitted on a third, 0.986 on all)
    assert knn_label_accuracy(sampled, labels) > knn_label_accuracy(full, labels) - 0.05
    # and land among the fitted images of their own class: the chunks share one map
    nearest_fitted = fitted[((sampled[placed][:, None] - sampled[fitted][None]) ** 2).sum(-1).argmin(1)]
    assert (labels[nearest_fitted] == labels[placed]).mean() > 0.9
    with pytest.raises(ValueError, match="map_sample"):
        fit_manifold(points, dims=2, seed=0, sample=5)
