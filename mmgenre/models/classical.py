"""Classical baselines a practitioner tries first (scikit-learn, not Keras).

* "tfidf": TF-IDF of overview word uni- and bigrams + one-vs-rest logistic regression.
* "poster": colour histogram + tiny thumbnail of the poster + logistic regression.
* "tfidf+poster": both feature sets concatenated.

The regularisation strength C is chosen on dev mean average precision; scores
go through the same report code as the deep models (``trainer.run_classical``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import StandardScaler

from mmgenre.evaluation.metrics import mean_average_precision

KINDS = {"tfidf": ("overview",), "poster": ("poster",), "tfidf+poster": ("poster", "overview")}
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


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
        if kind not in KINDS:
            raise ValueError(f"classical baseline must be one of {sorted(KINDS)}, got {kind!r}")
        self.kind, self.seed = kind, seed
        self.modalities = KINDS[kind]

    def _features(self, rows, fit=False):
        parts = []
        if "overview" in self.modalities:
            if fit:
                self.tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                             max_features=20000)
                parts.append(self.tfidf.fit_transform(rows["overview"]))
            else:
                parts.append(self.tfidf.transform(rows["overview"]))
        if "poster" in self.modalities:
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
        for c in C_GRID:
            model = self._model(c).fit(x_train, train_y)
            score = mean_average_precision(dev_y, model.predict_proba(x_dev))
            if best is None or score > best[0]:
                best = (score, c, model)
        self.dev_map, self.c, self.model = best
        return self

    def predict_proba(self, rows) -> np.ndarray:
        return self.model.predict_proba(self._features(rows))

