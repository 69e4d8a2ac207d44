"""How unlike the training faces an image is: an anomaly score from the VAE.

A VAE's likelihood rates simple images as *more* likely than its own
training data (Nalisnick et al. 2019): a plain white crop reconstructs
almost perfectly. The scores here are measured against each other
(`research/anomaly/study.py`, the table in docs/anomaly.md):

  elbo          -ELBO in nats (the trap: plain images score low)
  error         the reconstruction's mean squared error (the trap too)
  kl            KL(q(z|x) || N(0, I)): how far the code is from the prior
  complexity    -ELBO in bits minus the PNG file's bits (Serra et al. 2020):
                the likelihood corrected for how simple the image is
  typicality    the code's Mahalanobis distance from the training codes
                (a Gaussian fitted to them), squared, per dimension

Higher always means less like the training faces. The default (`DEFAULT_SCORE`)
is `complexity`, the only one above 0.95 ROC AUC in the study (0.986; the
trap's two score 0.556). It and its threshold, set on held-out training
faces at a false-alarm rate of FALSE_ALARM_RATE, are stored beside the model
as MODEL.score.npz.
"""

import concurrent.futures
import dataclasses
import io
import math
from pathlib import Path

import numpy as np

from cvae.atomic import atomic_path
from cvae.batching import batches
from cvae.errors import CvaeError

SCORES = ("elbo", "error", "kl", "complexity", "typicality")
DEFAULT_SCORE = "complexity"
FALSE_ALARM_RATE = 0.05
SCORE_SUFFIX = ".score.npz"
# Smaller than inference's batches: the terms are computed in float64.
_BATCH = 64
_PNG_THREADS = 2


def score_path(model_path):
    return Path(model_path).with_suffix(SCORE_SUFFIX)


def scorer_beside(model_path):
    """The `Scorer` stored beside a model (MODEL.score.npz), or None if it has none."""
    path = score_path(model_path)
    return Scorer.load(path) if path.is_file() else None


def score_terms(model, images, likelihood, scale, code_mean=None, code_precision=None,
                encoded=None):
    """Each candidate score of uint8 images (N, H, W, C), as a dict of arrays.

    `model` is anything with numpy `encode` and `decode`: a VAE, or the
    codec's LiteRT model, which runs without TensorFlow. `likelihood` and
    `scale` are the decoder's (`Scorer` stores them); `typicality` needs the
    training codes' mean and precision matrix. `encoded`: the model's
    (z_mean, z_log_var) of these images, where the caller has them already
    (compressing does), so that the encoder does not run twice."""
    images = np.asarray(images)
    terms = {name: [] for name in SCORES}
    given = None if encoded is None else zip(*(batches(part, _BATCH) for part in encoded))
    # The PNG files are made on other threads while the networks run (both
    # release the GIL): on two cores, the complexity correction costs no time.
    with concurrent.futures.ThreadPoolExecutor(_PNG_THREADS) as pool:
        for batch in batches(images, _BATCH):
            png_bytes = pool.map(_png_size, batch)
            parts = model.encode(batch) if given is None else next(given)
            _add_terms(terms, model, batch, parts, png_bytes, likelihood, scale, code_mean,
                       code_precision)
    return {name: np.concatenate(values).astype(np.float64)
            for name, values in terms.items() if values}


def _add_terms(terms, model, batch, parts, png_bytes, likelihood, scale, code_mean,
               code_precision):
    """One batch's candidate scores, appended to `terms`."""
    unit = batch.astype(np.float32) / 255.0
    z_mean, z_log_var = (np.asarray(part, np.float64) for part in parts)
    decoded = np.asarray(model.decode(z_mean), np.float64)
    nll = reconstruction_nll(unit, decoded, likelihood, scale)
    kl = kl_divergence(z_mean, z_log_var)
    error = np.mean((decoded - unit) ** 2, axis=(1, 2, 3))
    png_bits = 8.0 * np.fromiter(png_bytes, np.float64, len(batch))
    # The density of 8-bit pixels: -log p(x) of the [0, 1] density plus
    # D log 255, in bits, so that it compares with a lossless file's bits.
    dimensions = np.prod(batch.shape[1:])
    elbo_bits = (nll + kl + dimensions * math.log(255.0)) / math.log(2.0)
    terms["elbo"].append(nll + kl)
    terms["error"].append(error)
    terms["kl"].append(kl)
    terms["complexity"].append(elbo_bits - png_bits)
    if code_mean is not None:
        centred = z_mean - code_mean
        terms["typicality"].append(
            np.einsum("ni,ij,nj->n", centred, code_precision, centred) / z_mean.shape[1])


# The objective's two terms in numpy, for scoring without a Keras backend:
# `cvae.model.losses` defines them for training, and a test holds the two equal.

def reconstruction_nll(images, reconstructions, likelihood, scale):
    """-log p(images | reconstructions) per image, as `losses.reconstruction_loss`."""
    images = np.asarray(images, np.float64)
    reconstructions = np.asarray(reconstructions, np.float64)
    if likelihood == "gaussian":
        per_pixel = (0.5 * ((images - reconstructions) / scale) ** 2 + math.log(scale)
                     + 0.5 * math.log(2.0 * math.pi))
    elif likelihood == "l1":
        per_pixel = np.abs(images - reconstructions) / scale + math.log(2.0 * scale)
    elif likelihood == "bernoulli":
        p = np.clip(reconstructions, 1e-6, 1.0 - 1e-6)
        per_pixel = -(images * np.log(p) + (1.0 - images) * np.log(1.0 - p))
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}")
    return per_pixel.reshape(len(per_pixel), -1).sum(axis=1)


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) per image, as `losses.kl_divergence`."""
    return 0.5 * np.sum(z_mean ** 2 + np.exp(z_log_var) - 1.0 - z_log_var, axis=-1)


def decoder_scale(model, images):
    """The model's decoder scale as one number: its learned or fixed scale,
    or for a calibrated one the value on these images' reconstructions."""
    from keras import ops

    unit = np.asarray(images[:_BATCH], np.float32) / 255.0
    reconstructions = model.decode(model.encode(images[:_BATCH])[0])
    return float(ops.convert_to_numpy(model.decoder_scale(unit, reconstructions)))


def _png_size(image):
    """The bytes of an image as a PNG file (Pillow's default compression)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image).squeeze()).save(buffer, "PNG")
    return buffer.tell()


@dataclasses.dataclass
class Scorer:
    """A model's anomaly score: which score, its threshold, the decoder's
    likelihood and scale, and the training codes' Gaussian that `typicality`
    needs: all that scoring needs besides the model's encode and decode."""

    score: str
    threshold: float
    code_mean: np.ndarray
    code_precision: np.ndarray
    likelihood: str
    scale: float
    false_alarm_rate: float = FALSE_ALARM_RATE

    def __call__(self, model, images, encoded=None):
        """Scores of uint8 images, higher meaning less like the training faces
        (`encoded`: as `score_terms`)."""
        return score_terms(model, images, self.likelihood, self.scale, self.code_mean,
                           self.code_precision, encoded)[self.score]

    def outliers(self, model, images, encoded=None):
        """(scores, whether each is over the threshold)."""
        scores = self(model, images, encoded)
        return scores, scores > self.threshold

    def save(self, path):
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, score=self.score, threshold=self.threshold,
                         code_mean=self.code_mean, code_precision=self.code_precision,
                         likelihood=self.likelihood, scale=self.scale,
                         false_alarm_rate=self.false_alarm_rate)

    @classmethod
    def load(cls, path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                scorer = cls(str(stored["score"]), float(stored["threshold"]),
                             stored["code_mean"], stored["code_precision"],
                             str(stored["likelihood"]), float(stored["scale"]),
                             float(stored["false_alarm_rate"]))
        except KeyError as error:
            raise CvaeError(f"{path} is from an older cvae (it lacks {error}); make it again "
                            f"with `cvae calibrate-score --force`") from None
        except (OSError, ValueError) as error:
            raise CvaeError(f"cannot read the score file {path}: {error}") from None
        if scorer.score not in SCORES:
            raise CvaeError(f"{path}: unknown score {scorer.score!r}")
        return scorer


def calibrate_scorer(model, training_faces, held_out_faces, score=DEFAULT_SCORE,
                     false_alarm_rate=FALSE_ALARM_RATE):
    """Fit the training codes' Gaussian on `training_faces`, then set the
    threshold that `false_alarm_rate` of `held_out_faces` exceed."""
    if score not in SCORES:
        raise CvaeError(f"unknown score {score!r}; choose one of {SCORES}")
    z_mean, _ = model.encode(training_faces)
    z_mean = z_mean.astype(np.float64)
    mean = z_mean.mean(axis=0)
    # A little shrinkage keeps the precision finite for dimensions the codes barely use.
    covariance = np.cov(z_mean, rowvar=False) + 1e-3 * np.eye(z_mean.shape[1])
    scorer = Scorer(score, 0.0, mean.astype(np.float32),
                    np.linalg.inv(covariance).astype(np.float32), model.config.likelihood,
                    decoder_scale(model, held_out_faces), false_alarm_rate)
    values = scorer(model, held_out_faces)
    scorer.threshold = float(np.quantile(values, 1.0 - false_alarm_rate))
    return scorer


def roc_auc(positives, negatives):
    """The probability that a random positive scores above a random negative
    (ties count half): the area under the ROC curve."""
    positives, negatives = np.asarray(positives), np.asarray(negatives)
    ranks = _ranks(np.concatenate([positives, negatives]))
    positive_ranks = ranks[:len(positives)].sum()
    return float((positive_ranks - len(positives) * (len(positives) + 1) / 2)
                 / (len(positives) * len(negatives)))


def _ranks(values):
    """1-based ranks, ties given their mean rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    # The tied values of a group share the mean of the ranks they span.
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
