import numpy as np
import pytest

from mmgenre.evaluation import metrics
from mmgenre.training import thresholds as thresholds_lib


def test_multilabel_metrics_on_a_hand_checked_example():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    y_prob = np.array([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3], [0.6, 0.3, 0.7]])
    m = metrics.multilabel_metrics(y_true, y_prob, 0.5)
    # predictions: [1,0,0], [0,1,0], [1,0,1] -> tp=3, fp=1, fn=2
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert m["top1_accuracy"] == pytest.approx(2 / 3)  # row 3: top is genre 2, not true
    assert m["subset_accuracy"] == pytest.approx(1 / 3)
    # genres 0 and 1 ranked perfectly (AP 1); genre 2: its one positive (0.4) ranks second
    assert m["mAP"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_thresholds_are_tuned_per_genre_and_default_without_positives():
    y_true = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    y_prob = np.array([[0.3, 0.9], [0.25, 0.1], [0.1, 0.2], [0.05, 0.3]])
    thresholds = thresholds_lib.tune_thresholds(y_true, y_prob)
    assert 0.1 < thresholds[0] <= 0.25  # separates 0.25/0.3 from 0.1/0.05
    assert thresholds[1] == 0.5  # no positive: nothing to tune


def test_per_genre_thresholds_maximise_scikit_learns_f1_nearest_half_on_ties():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y_true = (rng.random((150, 6)) < [0.5, 0.3, 0.1, 0.05, 0.02, 0.0]).astype(int)
    y_prob = np.round(rng.random((150, 6)) * 0.7 + y_true * 0.2, 1)  # coarse: many ties
    grid = thresholds_lib.THRESHOLD_GRID
    for g, chosen in enumerate(thresholds_lib.tune_thresholds(y_true, y_prob)):
        if not y_true[:, g].any():
            assert chosen == 0.5
            continue
        f1 = {t: f1_score(y_true[:, g], y_prob[:, g] >= t, zero_division=0) for t in grid}
        best = [t for t in grid if f1[t] == max(f1.values())]
        assert chosen == min(best, key=lambda t: abs(t - 0.5))


def test_prevalence_thresholds_flag_a_multiple_of_the_train_frequency():
    rng = np.random.default_rng(0)
    y_true = (rng.random((200, 3)) < [0.5, 0.1, 0.02]).astype(int)
    y_prob = np.clip(y_true * 0.3 + rng.random((200, 3)) * 0.7, 0, 1)  # informative, overlapping
    thresholds = thresholds_lib.prevalence_thresholds(y_true, y_prob, y_true.mean(axis=0), factors=(1.0,))
    # factor 1: each genre is flagged on about its frequency of movies, rare ones included
    assert (y_prob >= thresholds).mean(axis=0) == pytest.approx(y_true.mean(axis=0), abs=0.011)
    # the factor picked on dev macro-F1 is at least as good as factor 1 on dev
    chosen = thresholds_lib.choose("prevalence", y_true, y_prob, y_true)
    score = metrics.multilabel_metrics(y_true, y_prob, chosen)["macro_f1"]
    assert score >= metrics.multilabel_metrics(y_true, y_prob, thresholds)["macro_f1"]
    assert np.array_equal(thresholds_lib.choose("per_genre", y_true, y_prob, y_true),
                          thresholds_lib.tune_thresholds(y_true, y_prob))
    with pytest.raises(ValueError, match="threshold rule must be one of"):
        thresholds_lib.choose("global", y_true, y_prob, y_true)


def test_prior_predicts_majority_genres_and_scores_prevalence_ap():
    train = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 0]], np.float32)
    prior = metrics.prior_probabilities(train.mean(axis=0), 5)
    assert prior.shape == (5, 3) and (prior[:, :2] >= 0.5).all() and (prior[:, 2] < 0.5).all()
    y_true = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0], [1, 1, 0]])
    ap = metrics.mean_average_precision(y_true, prior)
    assert ap == pytest.approx(np.mean([3 / 5, 2 / 5, 1 / 5]))


def test_single_label_metrics():
    y_true = np.eye(3)[[0, 1, 2, 2]]
    y_prob = np.eye(3)[[0, 1, 1, 2]] * 0.8 + 0.05
    m = metrics.single_label_metrics(y_true, y_prob, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_error_analysis_counts_false_positives_and_negatives_per_genre():
    import pandas as pd

    from mmgenre.evaluation.reports import error_analysis

    table = pd.DataFrame({"id": ["a", "b", "c"], "title": ["A", "B", "C"],
                          "overview": ["one", "two", None]})
    y_true = np.array([[1, 0], [1, 1], [0, 1]], float)
    y_prob = np.array([[0.9, 0.95], [0.2, 0.9], [0.1, 0.7]])
    text = error_analysis(table, y_true, y_prob, ["Drama", "Horror"], y_prob >= 0.5)
    assert "| Drama | 2 | 0 | 1 |" in text and "| Horror | 2 | 1 | 0 |" in text
    assert "2 of 3 movies have at least one wrong genre" in text
    # A is off by 0.1 + 0.95, B by 0.8 + 0.1: the more confident mistake comes first
    assert text.index("**A**") < text.index("**B**") and "**C**" not in text


def test_macro_f1_averages_over_genres_present_like_map():
    from mmgenre.evaluation.metrics import multilabel_metrics

    truth = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.8], [0.1, 0.9, 0.7], [0.8, 0.7, 0.9]])  # genre 2: never true
    scores = multilabel_metrics(truth, probs, 0.5)
    assert scores["macro_f1"] == 1.0 and scores["genres_without_positives"] == 1
    assert scores["mAP"] == 1.0


def test_average_precision_equals_scikit_learn_per_genre_and_per_resample():
    """mAP without one scikit-learn call per genre: the same values, ties and a genre without
    a positive included; weighted draws score bootstrap resamples as if the rows were copied."""
    from intervals import resampled_map
    from sklearn.metrics import average_precision_score

    from mmgenre.evaluation.metrics import average_precisions, mean_average_precision

    rng = np.random.default_rng(1)
    truth = (rng.random((120, 5)) < np.linspace(0.02, 0.5, 5)).astype(int)  # a rare genre too
    truth[:, 0] = 0  # no positive: left out of the mean, as scikit-learn would warn about it
    scores = np.round(rng.random((120, 5)) + truth * 0.3, 1)  # many tied scores

    def sklearn_map(t, s):
        return np.mean([average_precision_score(t[:, g], s[:, g]) for g in range(5) if t[:, g].any()])

    per_genre = average_precisions(truth, scores)[0]
    assert np.isnan(per_genre[0])
    np.testing.assert_allclose(per_genre[1:], [average_precision_score(truth[:, g], scores[:, g])
                                               for g in range(1, 5)], atol=1e-12)
    assert mean_average_precision(truth, scores) == pytest.approx(sklearn_map(truth, scores), abs=1e-12)
    index = rng.integers(0, 120, (40, 120))
    counts = np.stack([np.bincount(row, minlength=120) for row in index])
    np.testing.assert_allclose(resampled_map(truth, scores, counts),
                               [sklearn_map(truth[i], scores[i]) for i in index], atol=1e-12)
    assert np.isnan(mean_average_precision(np.zeros((4, 2)), np.ones((4, 2))))


def test_results_name_the_cpu_and_its_instruction_set(tmp_path, monkeypatch):
    from mmgenre.evaluation import reports
    from mmgenre.evaluation.reports import cpu_description

    block = ("processor\t: {}\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
             "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx fma avx2 sha_ni\n")
    path = tmp_path / "cpuinfo"
    path.write_text(block.format(0) + "\n" + block.format(1))
    assert cpu_description(str(path)) == "AMD EPYC 7B13 (family 25 model 1, AVX2)"
    path.write_text(block.format(0).replace("avx2", "avx2 avx512f avx512bw"))
    assert cpu_description(str(path)) == "AMD EPYC 7B13 (family 25 model 1, AVX-512)"
    # aarch64 lists no model name, family or x86 flags; no cpuinfo at all (macOS): the platform's word.
    monkeypatch.setattr(reports.platform, "processor", lambda: "arm")
    path.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n")
    assert cpu_description(str(path)) == "arm"
    assert cpu_description(str(tmp_path / "absent")) == "arm"
    monkeypatch.setattr(reports.platform, "processor", lambda: "")
    assert cpu_description(str(tmp_path / "absent")) == "unknown CPU"
