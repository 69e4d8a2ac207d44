"""Where latent codes to decode come from:

- "second-stage": u ~ N(0, I) mapped to z by the second-stage VAE stored in
  the model (`cvae.model.second_stage`), plus that VAE's own Gaussian noise around
  the code it decodes (`VAEConfig.second_stage_noise`, drawn after u from
  the same seed); the default when the model has one;
- "prior": z ~ N(0, I) decoded directly; the default otherwise;
- "gmm": a Gaussian mixture fitted to the training set's posterior means
  ("ex-post density estimation", Ghosh et al. 2020, "From Variational to
  Deterministic Autoencoders"), saved beside the model as `<model>.gmm.npz`.

The noise is N(0, temperature² I) for the first two; the temperature
scales each mixture component's spread for the third.
"""

from pathlib import Path

import numpy as np

from cvae.atomic import atomic_path
from cvae.batching import batches
from cvae.errors import CvaeError

SAMPLERS = ("second-stage", "prior", "gmm")
# The name earlier versions used for "prior".
_ALIASES = {"normal": "prior"}
MIXTURE_SUFFIX = ".gmm.npz"
# Added to every covariance's diagonal: keeps components invertible when
# some dimensions barely vary (inactive units).
_REGULARIZATION = 1e-6


class GaussianMixture:
    """A full-covariance Gaussian mixture, fitted by expectation-maximization."""

    def __init__(self, weights, means, covariances):
        self.weights = np.asarray(weights, np.float64)
        self.means = np.asarray(means, np.float64)
        self.covariances = np.asarray(covariances, np.float64)
        self._cholesky = np.linalg.cholesky(self.covariances)

    @classmethod
    def fit(cls, points, components=10, iterations=200, tolerance=1e-4, seed=0, log=None):
        points = np.asarray(points, np.float64)
        count, dimension = points.shape
        if count < components:
            raise CvaeError(f"{count} codes cannot fit {components} mixture components")
        rng = np.random.default_rng(seed)
        mixture = cls(np.full(components, 1.0 / components),
                      points[_kmeans_plus_plus(points, components, rng)],
                      np.repeat(np.cov(points.T).reshape(1, dimension, dimension)
                                + _REGULARIZATION * np.eye(dimension), components, axis=0))
        previous = -np.inf
        for iteration in range(iterations):
            log_joint = mixture._log_joint(points)
            log_likelihood = np.logaddexp.reduce(log_joint, axis=1)
            mean_log_likelihood = float(np.mean(log_likelihood))
            responsibilities = np.exp(log_joint - log_likelihood[:, None])
            mixture = cls._maximize(points, responsibilities)
            if log and iteration % 10 == 0:
                log(f"EM iteration {iteration}: mean log-likelihood {mean_log_likelihood:.3f}")
            if abs(mean_log_likelihood - previous) < tolerance * max(1.0, abs(previous)):
                break
            previous = mean_log_likelihood
        return mixture

    @classmethod
    def _maximize(cls, points, responsibilities):
        totals = responsibilities.sum(axis=0) + 1e-10
        means = responsibilities.T @ points / totals[:, None]
        covariances = []
        for k, mean in enumerate(means):
            centred = points - mean
            covariance = (responsibilities[:, k, None] * centred).T @ centred / totals[k]
            covariances.append(covariance + _REGULARIZATION * np.eye(points.shape[1]))
        return cls(totals / totals.sum(), means, np.stack(covariances))

    def _log_joint(self, points):
        """log w_k + log N(x | mean_k, cov_k), shape (N, K)."""
        dimension = points.shape[1]
        columns = []
        for weight, mean, cholesky in zip(self.weights, self.means, self._cholesky):
            whitened = np.linalg.solve(cholesky, (points - mean).T)
            log_determinant = 2.0 * np.sum(np.log(np.diag(cholesky)))
            columns.append(np.log(weight) - 0.5 * (np.sum(whitened ** 2, axis=0) + log_determinant
                                                   + dimension * np.log(2 * np.pi)))
        return np.stack(columns, axis=1)

    def log_density(self, points):
        return np.logaddexp.reduce(self._log_joint(np.asarray(points, np.float64)), axis=1)

    def sample(self, n, seed=None, temperature=1.0):
        """n draws; temperature scales each component's spread around its mean."""
        rng = np.random.default_rng(seed)
        labels = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, self.means.shape[1]))
        offsets = np.einsum("nij,nj->ni", self._cholesky[labels], noise)
        return self.means[labels] + temperature * offsets

    def save(self, path):
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, weights=self.weights, means=self.means,
                         covariances=self.covariances)

    @classmethod
    def load(cls, path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                return cls(stored["weights"], stored["means"], stored["covariances"])
        except (OSError, ValueError, KeyError, np.linalg.LinAlgError) as error:
            raise CvaeError(f"cannot read the mixture {path}: {error}") from None


def mixture_path(model_path):
    return Path(model_path).with_suffix(MIXTURE_SUFFIX)


def mixture_beside(model_path):
    """The mixture saved beside a model file, or None when there is none."""
    path = mixture_path(model_path)
    return GaussianMixture.load(path) if path.is_file() else None


def check_mixture_data(count, components, dimension):
    """Refuse too few codes: a full covariance in `dimension` dimensions needs
    more than `dimension` points per component, or it is singular and the
    mixture only memorises its points."""
    needed = components * (dimension + 1)
    if count < needed:
        raise CvaeError(f"{count} images are too few to fit {components} full-covariance "
                        f"components in {dimension} dimensions (at least {needed}); use more "
                        f"images or fewer --components")


def fit_mixture(model, images, components=10, seed=0, log=None):
    """Fit the ex-post mixture to the posterior means of (training) images."""
    z_mean, _ = model.encode(images)
    return GaussianMixture.fit(z_mean, components, seed=seed, log=log)


def default_sampler(model):
    return "second-stage" if model.second_stage_decoder is not None else "prior"


def available_samplers(model, mixture=None):
    """The samplers this model (and mixture) can use, its default first."""
    usable = {"second-stage": model.second_stage_decoder is not None, "prior": True,
              "gmm": mixture is not None}
    default = default_sampler(model)
    return [default] + [name for name in SAMPLERS if name != default and usable[name]]


def resolve_sampler(model, sampler=None, mixture=None):
    """The sampler to use: the one asked for (checked), else the model's default."""
    if sampler is None:
        return "gmm" if mixture is not None else default_sampler(model)
    sampler = _ALIASES.get(sampler, sampler)
    if sampler not in SAMPLERS:
        raise CvaeError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sampler == "second-stage" and model.second_stage_decoder is None:
        raise CvaeError("this model has no second stage; use --sampler prior or gmm "
                        "(or add one with cvae second-stage)")
    if sampler == "gmm" and mixture is None:
        raise CvaeError("the gmm sampler needs a mixture fitted to this model")
    return sampler


def sample_latents(model, n, seed=None, temperature=1.0, mixture=None, sampler=None):
    """n latent codes from `sampler` (see the module's docstring); by default
    the mixture when one is given, else the model's default sampler."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    sampler = resolve_sampler(model, sampler, mixture)
    if sampler != "gmm":
        rng = np.random.default_rng(seed)
        noise = temperature * rng.standard_normal((n, model.config.latent_dim))
        if sampler == "prior":
            return noise
        codes = np.concatenate([np.asarray(model.second_stage_decoder(chunk, training=False))
                                for chunk in batches(noise)])
        if model.config.second_stage_noise:
            # Drawn after u, so that u is the same for a seed with or without it.
            spread = model.config.second_stage_noise * temperature
            codes = codes + spread * rng.standard_normal(codes.shape)
        return codes
    if mixture.means.shape[1] != model.config.latent_dim:
        raise CvaeError(f"the mixture has {mixture.means.shape[1]} dimensions, "
                        f"the model {model.config.latent_dim}")
    return mixture.sample(n, seed, temperature)


def _kmeans_plus_plus(points, count, rng):
    chosen = [int(rng.integers(len(points)))]
    distances = np.sum((points - points[chosen[0]]) ** 2, axis=1)
    for _ in range(count - 1):
        chosen.append(int(rng.choice(len(points), p=distances / distances.sum())))
        distances = np.minimum(distances, np.sum((points - points[chosen[-1]]) ** 2, axis=1))
    return chosen

