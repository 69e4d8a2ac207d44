"""`cvae evaluate`: a model's numbers on held-out images, beside the baselines.

Every figure comes from one call of `evaluate`, on the same images:
reconstruction quality from z_mean, likelihood bounds, latent health, sample
quality (SWD), the PCA baseline with the same number of dimensions, and the
real-vs-real SWD floor. See the README's "Evaluation" section for definitions.
"""

import math
import sys

import numpy as np
from keras import ops

from cvae.batching import batches
from cvae.data.datasets import random_subset
from cvae.data.detection import face_rate
from cvae.errors import CvaeError, first_line
from cvae.evaluation import metrics
from cvae.evaluation.baselines import PCA
from cvae.model import losses

PUBLISHED_SIZE = 64
# Smaller than inference's batches: the IWAE bound holds K samples of each image.
_BATCH = 64


def evaluate(model, images, train_images=None, iwae_samples=16, pca_images=5000,
             inception=None, seed=0, log=None, pca=None, refine_steps=0, identity="auto"):
    """Evaluate `model` on `images` (uint8, N x H x W x C); returns a JSON-ready dict.

    train_images: fits the PCA baseline (at most `pca_images` of them); None skips it.
    pca: an already fitted baseline to use instead (see `fit_pca`).
    inception: a Keras network mapping images in [-1, 1] to features; enables FID.
    log: a function taking progress messages (default: stderr).
    refine_steps: also score reconstructions from codes refined by this many
    steps (`cvae.model.refinement`), under "refined"; the other figures keep the
    encoder's own codes.
    identity: also judge whether each reconstruction is the same person
    (`cvae.evaluation.identity`); "auto" where the judge is installed and the faces are
    at least IDENTITY_MIN_SIZE pixels a side.
    """
    log = log or _log_to_stderr
    images = np.asarray(images)
    if len(images) < 4:
        raise ValueError(f"evaluation needs at least 4 images, got {len(images)}")
    judging = judges_identity(identity, images.shape[1])
    originals = images.astype(np.float32) / 255.0
    embeddings = None
    if judging:
        from cvae.evaluation.identity import embed

        log("the identity judge embeds each original and reconstruction (about 0.1 s a face)")
        # Once: the model's, the refined codes' and PCA's reconstructions are
        # each judged against the same originals.
        embeddings = embed(originals)
    reference, other_half = split_halves(originals, seed)
    half = len(reference)

    log(f"reconstructing {len(images)} images")
    z_mean, z_log_var = model.encode(images)
    reconstructions = model.decode(z_mean)
    results = {
        "images": len(images),
        "image_shape": list(images.shape[1:]),
        "latent_dim": model.config.latent_dim,
        **reconstruction_entry(originals, reconstructions, seed, reference, embeddings),
    }
    log(f"likelihood bounds with {iwae_samples} importance samples per image")
    results["likelihood"] = likelihood_bounds(model, images, iwae_samples, seed)
    kl_per_dimension = metrics.kl_per_dimension(z_mean, z_log_var)
    results["latent"] = {
        "active_units": metrics.active_units(z_mean),
        "kl_per_dimension": [round(float(value), 4) for value in kl_per_dimension],
    }
    log(f"sample SWD and face-detection rate against {half} held-out images")
    samples = model.generate(half, seed=seed)
    results["samples"] = samples_entry(reference, samples, seed)
    if model.second_stage_decoder is not None:
        prior_samples = model.generate(half, seed=seed, sampler="prior")
        results["prior_samples"] = samples_entry(reference, prior_samples, seed)
    results["real_vs_real"] = samples_entry(reference, other_half, seed)
    if refine_steps:
        log(f"refining the codes of {len(images)} images, {refine_steps} steps")
        refined = model.decode(model.refine(images, z_mean, refine_steps))
        results["refined"] = {"steps": refine_steps,
                              **reconstruction_entry(originals, refined, seed, reference,
                                                     embeddings)}
    if pca is None and train_images is not None:
        pca = fit_pca(train_images, model.config.latent_dim, pca_images, seed, log)
    if pca is not None:
        pca_samples = pca.sample(half, seed=seed)
        results["pca"] = {
            "components": pca.components,
            "fitted_on": pca.fitted_on,
            **reconstruction_entry(originals, pca.reconstruct(originals), seed,
                                   reference, embeddings),
            "samples": samples_entry(reference, pca_samples, seed),
        }
    else:
        results["pca"] = None
    results["fid"] = None
    if inception is not None:
        log("Inception features for FID")
        reference_features = inception_features(inception, reference)

        def fid(images):
            return metrics.frechet_distance(reference_features, inception_features(inception, images))

        results["fid"] = {"model": fid(samples), "real_vs_real": fid(other_half),
                          "pca": fid(pca.sample(half, seed=seed)) if pca is not None else None}
    return results


def fit_pca(train_images, components, max_images=5000, seed=0, log=None):
    """The PCA baseline, fitted on at most `max_images` uint8 training images."""
    training = random_subset(train_images, max_images, seed)
    (log or _log_to_stderr)(f"fitting PCA with {components} components on {len(training)} "
                            f"training images")
    return PCA(components, seed=seed).fit(training.astype(np.float32) / 255.0)


# The judge's landmark predictor needs a face of some size.
IDENTITY_MIN_SIZE = 64


def judges_identity(identity, image_size):
    """Whether to run the identity judge: True, False, or "auto" (where it
    is installed and the faces are large enough)."""
    from cvae.evaluation import identity as judge

    if identity == "auto":
        return judge.available() and image_size >= IDENTITY_MIN_SIZE
    if identity and not judge.available():
        raise CvaeError('the identity judge is not installed: pip install "cvae[identity]"')
    return bool(identity)


def reconstruction_entry(originals, reconstructions, seed=0, reference=None,
                         identity_embeddings=None):
    """How close reconstructions are ("reconstruction": MSE, PSNR, SSIM), how
    much texture they keep ("reconstruction_swd"), and, given the originals'
    `identity_embeddings` (`cvae.evaluation.identity.embed`), whether each is still the
    same person ("identity": match rate, mean distance,
    `cvae.evaluation.identity.identity_metrics`). reference: the first of
    `split_halves(originals, seed)`, when the caller already holds it."""
    if reference is None:
        reference = split_halves(originals, seed)[0]
    # Reconstructions of the other half against the reference half, as the
    # real-vs-real floor compares the other half itself. The same split of
    # the reconstructions picks exactly those images.
    entry = {"reconstruction": reconstruction_metrics(originals, reconstructions),
             "reconstruction_swd": swd_entry(reference, split_halves(reconstructions, seed)[1],
                                             seed)}
    if identity_embeddings is not None:
        from cvae.evaluation.identity import identity_metrics

        entry["identity"] = identity_metrics(originals, reconstructions, identity_embeddings)
    return entry


def reconstruction_metrics(originals, reconstructions):
    """MSE, PSNR (dB) and SSIM, averaged over images, at full size and at 64x64."""
    small = PUBLISHED_SIZE
    entry = _quality(originals, reconstructions)
    if originals.shape[1] > small:
        entry.update({f"{name}_{small}": value for name, value in _quality(
            metrics.downsample(originals, small), metrics.downsample(reconstructions, small)).items()})
    return entry


def _quality(originals, reconstructions):
    return {"mse": float(np.mean(metrics.mean_squared_error(originals, reconstructions))),
            "psnr": float(np.mean(metrics.psnr(originals, reconstructions))),
            "ssim": float(np.mean(metrics.ssim(originals, reconstructions)))}


def likelihood_bounds(model, images, samples=16, seed=0):
    """-ELBO (nats per image, beta = 1) with its two terms, the IWAE bound, bits per dimension.

    Gaussian and Laplace decoders are densities, so they are scored on
    uniformly dequantized pixels y = (k + u) / 255 and the bits per dimension
    bound the discrete 8-bit likelihood. A Bernoulli decoder is not a density
    on [0, 1]; it is scored on k / 255 and has no bits per dimension.
    """
    if samples < 1:
        raise ValueError(f"the IWAE bound needs at least 1 sample, got {samples}")
    config = model.config
    dequantize = config.likelihood != "bernoulli"
    rng = np.random.default_rng(seed)
    reconstruction_nll, kl, iwae_nll = [], [], []
    for batch in batches(images, _BATCH):
        batch = batch.astype(np.float32)
        if dequantize:
            batch = batch + rng.random(batch.shape, dtype=np.float32)
        batch /= 255.0
        z_mean, z_log_var, _ = model.encoder(batch, training=False)
        z_mean = ops.convert_to_numpy(ops.cast(z_mean, "float32"))
        z_log_var = ops.convert_to_numpy(ops.cast(z_log_var, "float32"))
        log_weights, log_likelihoods = [], []
        for _ in range(samples):
            noise = rng.standard_normal(z_mean.shape).astype(np.float32)
            z = z_mean + np.exp(0.5 * z_log_var) * noise
            decoded = model.decoder(z, training=False)
            log_likelihood = -ops.convert_to_numpy(losses.reconstruction_loss(
                batch, decoded, config.likelihood, model.decoder_scale(batch, decoded)))
            log_prior = -0.5 * np.sum(z ** 2 + math.log(2 * math.pi), axis=1)
            log_posterior = -0.5 * np.sum(noise ** 2 + z_log_var + math.log(2 * math.pi), axis=1)
            log_likelihoods.append(log_likelihood)
            log_weights.append(log_likelihood + log_prior - log_posterior)
        log_weights = np.stack(log_weights).astype(np.float64)
        reconstruction_nll.append(-np.mean(log_likelihoods, axis=0))
        kl.append(ops.convert_to_numpy(losses.kl_divergence(z_mean, z_log_var)))
        iwae_nll.append(-(np.logaddexp.reduce(log_weights, axis=0) - math.log(samples)))
    reconstruction_nll = float(np.mean(np.concatenate(reconstruction_nll)))
    kl = float(np.mean(np.concatenate(kl)))
    iwae_nll = float(np.mean(np.concatenate(iwae_nll)))
    dimensions = int(np.prod(images.shape[1:]))
    entry = {"negative_elbo": reconstruction_nll + kl, "reconstruction_nll": reconstruction_nll,
             "kl": kl, "iwae_nll": iwae_nll, "iwae_samples": samples,
             "dequantized": dequantize, "bits_per_dim": None, "bits_per_dim_elbo": None}
    if dequantize:
        entry["bits_per_dim"] = metrics.bits_per_dimension(iwae_nll, dimensions)
        entry["bits_per_dim_elbo"] = metrics.bits_per_dimension(reconstruction_nll + kl, dimensions)
    return entry


def split_halves(images, seed=0):
    """Two disjoint random halves: samples are compared with the first, and the
    second against the first gives the real-vs-real floor."""
    half = len(images) // 2
    order = np.random.default_rng(seed).permutation(len(images))
    return images[order[:half]], images[order[half:2 * half]]


def swd_entry(reference, images, seed):
    distance = metrics.swd(reference, images, seed=seed)
    return {"swd": distance["mean"], "swd_levels": distance["levels"]}


def samples_entry(reference, images, seed):
    """How close a set of samples is to real faces: `swd_entry` and the face detector's rate."""
    return {**swd_entry(reference, images, seed), "face_rate": face_rate(images)}


def inception_features(network, images):
    """Features of images in [0, 1], resized to the network's input and scaled to [-1, 1]."""
    height, width = network.input_shape[1:3]
    features = []
    for batch in batches(images, _BATCH):
        batch = ops.image.resize(np.asarray(batch, np.float32), (height, width),
                                 interpolation="bilinear")
        features.append(ops.convert_to_numpy(network(batch * 2.0 - 1.0, training=False)))
    return np.concatenate(features).astype(np.float64)


def load_inception(weights_path, input_size=299):
    """InceptionV3 pooled features from a local weights file; never downloads.

    FID is defined at 299x299; a smaller input_size (>= 75) only serves tests.
    """
    import keras

    try:
        return keras.applications.InceptionV3(include_top=False, pooling="avg",
                                              weights=str(weights_path),
                                              input_shape=(input_size, input_size, 3))
    except Exception as error:  # h5py and Keras raise many types for a wrong file.
        raise CvaeError(f"cannot load Inception weights {weights_path}: {first_line(error)}") from None


def format_report(results):
    """The human-readable table printed by `cvae evaluate`."""
    reconstruction, likelihood = results["reconstruction"], results["likelihood"]
    pca = results["pca"]
    rows = [("", "VAE", f"PCA ({pca['components']})" if pca else "PCA")]

    def both(key, fmt):
        vae_value = reconstruction.get(key)
        pca_value = pca["reconstruction"].get(key) if pca else None
        return (fmt.format(vae_value) if vae_value is not None else "-",
                fmt.format(pca_value) if pca_value is not None else "-")

    for key, label, fmt in (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"),
                            ("mse", "MSE", "{:.5f}"), (f"psnr_{PUBLISHED_SIZE}", "PSNR 64x64 (dB)", "{:.2f}"),
                            (f"ssim_{PUBLISHED_SIZE}", "SSIM 64x64", "{:.4f}")):
        if key in reconstruction:
            rows.append((label,) + both(key, fmt))
    rows.append(("sample SWD x1e3", f"{results['samples']['swd']:.1f}",
                 f"{pca['samples']['swd']:.1f}" if pca else "-"))
    rows.append(("samples with a face", f"{100 * results['samples']['face_rate']:.0f}%",
                 f"{100 * pca['samples']['face_rate']:.0f}%" if pca else "-"))
    rows.append(("reconstruction SWD x1e3", f"{results['reconstruction_swd']['swd']:.1f}",
                 f"{pca['reconstruction_swd']['swd']:.1f}" if pca else "-"))
    if "identity" in results:
        pca_identity = pca.get("identity") if pca else None
        rows.append(("same person (identity judge)", f"{100 * results['identity']['match']:.1f}%",
                     f"{100 * pca_identity['match']:.1f}%" if pca_identity else "-"))
        rows.append(("identity distance (same < 0.6)", f"{results['identity']['distance']:.3f}",
                     f"{pca_identity['distance']:.3f}" if pca_identity else "-"))
    refined = results.get("refined")
    if refined:
        rows.append((f"PSNR, codes refined {refined['steps']} steps",
                     f"{refined['reconstruction']['psnr']:.2f}", "-"))
        rows.append((f"SSIM, codes refined {refined['steps']} steps",
                     f"{refined['reconstruction']['ssim']:.4f}", "-"))
        if "identity" in refined:
            rows.append((f"same person, codes refined {refined['steps']} steps",
                         f"{100 * refined['identity']['match']:.1f}%", "-"))
    lines = [f"{results['images']} held-out images, "
             f"latent dimension {results['latent_dim']}", ""]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines += ["", f"real-vs-real SWD x1e3 (floor): {results['real_vs_real']['swd']:.1f}; "
                  f"the detector finds a face in {100 * results['real_vs_real']['face_rate']:.0f}% "
                  f"of real held-out faces",
              f"-ELBO: {likelihood['negative_elbo']:.1f} nats/image "
              f"(reconstruction {likelihood['reconstruction_nll']:.1f} + KL {likelihood['kl']:.1f})",
              f"IWAE bound (K={likelihood['iwae_samples']}): {likelihood['iwae_nll']:.1f} nats/image"]
    if likelihood["bits_per_dim"] is not None:
        lines.append(f"bits per dimension: {likelihood['bits_per_dim']:.3f} "
                     f"(ELBO: {likelihood['bits_per_dim_elbo']:.3f})")
    kl_per_dimension = results["latent"]["kl_per_dimension"]
    lines.append(f"active units: {results['latent']['active_units']} of {results['latent_dim']}; "
                 f"largest KL per dimension: "
                 + ", ".join(f"{value:.2f}" for value in sorted(kl_per_dimension, reverse=True)[:5]))
    if results["fid"] is not None:
        fid = results["fid"]
        lines.append(f"FID: model {fid['model']:.1f}, real-vs-real {fid['real_vs_real']:.1f}"
                     + (f", PCA {fid['pca']:.1f}" if fid["pca"] is not None else ""))
    if "prior_samples" in results:
        prior = results["prior_samples"]
        lines.append(f"raw N(0, I) samples (--sampler prior): SWD x1e3 {prior['swd']:.1f}, "
                     f"{100 * prior['face_rate']:.0f}% with a face")
    if pca is None:
        lines.append("PCA baseline: not computed (pass --train-data)")
    return "\n".join(lines)


def _log_to_stderr(message):
    print(f"cvae evaluate: {message}", file=sys.stderr, flush=True)
