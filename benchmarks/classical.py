"""Classical baselines a practitioner tries first (scikit-learn, not Keras).

* "tfidf": TF-IDF of overview word uni- and bigrams + one-vs-rest logistic regression.
* "poster": colour histogram + tiny thumbnail of the poster + logistic regression.
* "tfidf+poster": both feature sets concatenated.
* a pretrained encoder's frozen embeddings ("minilm", "efficientnet_lite0", see
  ``mmgenre encoders list``), alone or joined to the others with "+" (for
  example "tfidf+minilm"): the linear probe of the encoder.

The regularisation strength C is chosen on dev mean average precision; scores
go through the same report code as the deep models (``run_classical``). Only the
benchmarks (``accuracy.py --classical``, ``learning_curve.py``) and tests use it:
the library's one logistic-regression fitter is the linear probe's
(``mmgenre.training.solve``), which does TF-IDF and encoder features in one
servable Keras graph; these baselines add the poster colour histogram and leave
a report, not a model.

    python benchmarks/accuracy.py --classical tfidf poster tfidf+poster
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler, normalize

from mmgenre import config as config_lib
from mmgenre import runs
from mmgenre.data.prepare import Inputs, prepare_data
from mmgenre.evaluation.evaluate import report_probabilities
from mmgenre.evaluation.metrics import mean_average_precision
from mmgenre.training import thresholds as thresholds_lib

FEATURES = {"tfidf": "overview", "poster": "poster"}
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)
OOF_FOLDS = 5
# Encoder embeddings are L2-normalised like TF-IDF rows (standardising them scored lower on the
# paired set's dev split) and want stronger regularisation: dev picked C 0.003 (MiniLM) and
# 0.1 (EfficientNet-Lite0).
C_GRID_ENCODERS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def kind_modalities(kind: str) -> tuple:
    """The inputs a baseline kind reads, e.g. "tfidf+minilm" -> ("overview",)."""
    from mmgenre.encoders.sources import KNOWN

    modalities = set()
    for part in kind.split("+"):
        if part in FEATURES:
            modalities.add(FEATURES[part])
        elif part in KNOWN:
            modalities.add("overview" if KNOWN[part].kind == "text" else "poster")
        else:
            raise ValueError(f"classical baseline parts must be from {sorted(FEATURES)} or an "
                             f"encoder in {sorted(KNOWN)}; got {part!r} in {kind!r}")
    return tuple(m for m in ("poster", "overview") if m in modalities)


def poster_features(path: str, thumb=(12, 8), bins: int = 8) -> np.ndarray:
    """(3 * bins + thumb_h * thumb_w * 3,) colour histogram and thumbnail in [0, 1]."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        pixels = np.asarray(rgb.resize((64, 96)), np.float32) / 255.0
        small = np.asarray(rgb.resize(thumb[::-1]), np.float32).ravel() / 255.0
    hist = [np.histogram(pixels[..., c], bins=bins, range=(0, 1))[0] / pixels[..., c].size
            for c in range(3)]
    return np.concatenate([*hist, small])


class ClassicalBaseline:
    """Features fitted on train; one logistic regression per genre."""

    def __init__(self, kind: str, seed: int = 0):
        self.kind, self.seed = kind, seed
        self.modalities = kind_modalities(kind)
        self.parts = kind.split("+")
        self.grid = C_GRID if all(p in FEATURES for p in self.parts) else C_GRID_ENCODERS

    def _features(self, rows, fit=False):
        from mmgenre.encoders.embedding_cache import cached_embeddings
        from mmgenre.encoders.sources import KNOWN

        parts = []
        for part in self.parts:
            if part not in KNOWN:
                continue
            kind = KNOWN[part].kind
            dense = cached_embeddings(part, kind, rows["overview" if kind == "text" else "poster"])
            parts.append(sp.csr_matrix(normalize(dense)))
        if "tfidf" in self.parts:
            if fit:
                self.tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                             max_features=20000)
                parts.append(self.tfidf.fit_transform(rows["overview"]))
            else:
                parts.append(self.tfidf.transform(rows["overview"]))
        if "poster" in self.parts:
            dense = np.stack([poster_features(p) for p in rows["poster"]])
            if fit:
                self.scaler = StandardScaler().fit(dense)
            parts.append(sp.csr_matrix(self.scaler.transform(dense)))
        return sp.hstack(parts).tocsr()

    def _model(self, c):
        # class_weight="balanced": rare genres would otherwise never pass 0.5.
        return OneVsRestClassifier(LogisticRegression(C=c, class_weight="balanced", max_iter=2000,
                                                      random_state=self.seed))

    def fit(self, train_rows, train_y, dev_rows, dev_y):
        """Fits features on train, picks C on dev mAP, keeps that model."""
        x_train = self._features(train_rows, fit=True)
        x_dev = self._features(dev_rows)
        best = None
        for c in self.grid:
            model = self._model(c).fit(x_train, train_y)
            score = mean_average_precision(dev_y, model.predict_proba(x_dev))
            if best is None or score > best[0]:
                best = (score, c, model)
        self.dev_map, self.c, self.model = best
        # Out-of-fold train predictions at that C: scores no fit has seen, for choosing fusion
        # weights on 1,044 train movies instead of the 193 dev movies C was chosen on.
        from sklearn.model_selection import KFold, cross_val_predict

        self.train_oof = cross_val_predict(
            self._model(self.c), x_train, train_y, method="predict_proba",
            cv=KFold(OOF_FOLDS, shuffle=True, random_state=self.seed))
        return self

    def predict_proba(self, rows) -> np.ndarray:
        return self.model.predict_proba(self._features(rows))


def run_classical(data_cfg, kind: str, out_dir: str, seed: int = 0,
                  threshold_rule: str = config_lib.THRESHOLD_RULES[0]) -> dict:
    """Fits classical baseline ``kind`` on train (C on dev) and writes a run folder like a
    deep model's, through the same report code."""
    baseline = ClassicalBaseline(kind, seed)
    prepared = prepare_data(data_cfg, Inputs(baseline.modalities))
    (train, y_train), (dev, y_dev) = prepared.splits["train"], prepared.splits["dev"]
    baseline.fit(train, y_train, dev, y_dev)
    probs = {s: baseline.predict_proba(prepared.splits[s][0]) for s in ("dev", "test")}
    with runs.locked(out_dir):
        fitted = thresholds_lib.fit_and_save(config_lib.EvaluationConfig(thresholds=threshold_rule),
                                data_cfg.task, prepared, probs, baseline.train_oof, out_dir)
        return report_probabilities(f"{kind} + logistic regression", f"classical:{kind}", data_cfg,
                                    prepared, probs, out_dir, fitted, extra={"C": baseline.c},
                                    train_oof=baseline.train_oof)
