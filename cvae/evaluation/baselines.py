"""PCA: the linear autoencoder a VAE generalizes, used as the honest baseline.

With k components it is the best linear code of k numbers in mean squared
error; sampling a Gaussian in its component space (with the fitted variances)
gives the linear model's idea of new faces.
"""

import numpy as np


class PCA:
    """Principal components of flattened images, fitted by randomized SVD.

    Randomized SVD (Halko et al. 2011) needs only a few passes over the
    (images x pixels) matrix, so 5,000 images of 128x128x3 fit in seconds
    where a full SVD would take minutes.
    """

    def __init__(self, components, power_iterations=3, oversampling=16, seed=0):
        self.components = components
        self.power_iterations = power_iterations
        self.oversampling = oversampling
        self.seed = seed

    def fit(self, images):
        """images: (N, H, W, C) floats in [0, 1]."""
        flat = _flatten(images)
        if self.components > min(flat.shape):
            raise ValueError(f"PCA with {self.components} components needs at least that many "
                             f"images and pixels; got {flat.shape[0]} images of {flat.shape[1]} values")
        self.image_shape = images.shape[1:]
        self.fitted_on = len(flat)
        self.mean = flat.mean(axis=0)
        centred = flat - self.mean
        rng = np.random.default_rng(self.seed)
        width = min(self.components + self.oversampling, min(flat.shape))
        basis = centred @ rng.standard_normal((centred.shape[1], width)).astype(np.float32)
        for _ in range(self.power_iterations):
            basis, _ = np.linalg.qr(basis)
            basis, _ = np.linalg.qr(centred @ (centred.T @ basis))
        basis, _ = np.linalg.qr(basis)
        _, singular_values, right = np.linalg.svd(basis.T @ centred, full_matrices=False)
        self.axes = right[:self.components]
        self.variances = singular_values[:self.components] ** 2 / len(flat)
        return self

    def encode(self, images):
        return (_flatten(images) - self.mean) @ self.axes.T

    def decode(self, codes):
        flat = codes @ self.axes + self.mean
        return np.clip(flat, 0.0, 1.0).reshape((len(codes),) + self.image_shape)

    def reconstruct(self, images):
        return self.decode(self.encode(images))

    def sample(self, n, seed=0):
        """Decode n draws from N(0, diag(variances)) in component space."""
        rng = np.random.default_rng(seed)
        codes = rng.standard_normal((n, self.components)) * np.sqrt(self.variances)
        return self.decode(codes.astype(np.float32))


def _flatten(images):
    return np.asarray(images, np.float32).reshape(len(images), -1)
