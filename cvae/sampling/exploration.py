"""Walking the latent space: interpolations, traversals, attribute vectors and
per-dimension statistics. Everything here works on latent codes (numpy);
decoding them is the model's job."""

import numpy as np

INTERPOLATIONS = ("lerp", "slerp")


def interpolate(start, end, steps, mode="slerp"):
    """`steps` codes from `start` to `end` inclusive.

    lerp follows the straight line; slerp follows the great circle between
    the two directions (its norm moves linearly), which keeps intermediate
    codes at the typical radius of N(0, I) samples instead of cutting
    through the low-density middle (White 2016, "Sampling Generative Networks").
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if mode not in INTERPOLATIONS:
        raise ValueError(f"mode must be one of {INTERPOLATIONS}, got {mode!r}")
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if mode == "lerp":
        return (1 - t) * start + t * end
    start_norm, end_norm = np.linalg.norm(start), np.linalg.norm(end)
    if start_norm < 1e-12 or end_norm < 1e-12:
        return (1 - t) * start + t * end
    cosine = np.clip(np.dot(start, end) / (start_norm * end_norm), -1.0, 1.0)
    angle = np.arccos(cosine)
    if angle < 1e-6:
        return (1 - t) * start + t * end
    directions = (np.sin((1 - t) * angle) * start / start_norm
                  + np.sin(t * angle) * end / end_norm) / np.sin(angle)
    return directions * ((1 - t) * start_norm + t * end_norm)


def traverse(code, dimensions, values):
    """For each dimension, `code` with that dimension set to each of `values`:
    shape (len(dimensions), len(values), latent_dim)."""
    code = np.asarray(code, np.float64)
    for dimension in dimensions:
        if not 0 <= dimension < len(code):
            raise ValueError(f"dimension {dimension} is out of range 0..{len(code) - 1}")
    grid = np.repeat(np.repeat(code[None, None], len(dimensions), 0), len(values), 1)
    for row, dimension in enumerate(dimensions):
        grid[row, :, dimension] = values
    return grid


def most_informative_dimensions(z_mean, z_log_var, count):
    """The `count` dimensions with the largest mean KL over the given codes."""
    # Deferred: it loads the backend, which `cvae --help` need not.
    from cvae.evaluation import metrics

    kl = metrics.kl_per_dimension(np.atleast_2d(z_mean), np.atleast_2d(z_log_var))
    return [int(d) for d in np.argsort(-kl, kind="stable")[:count]]


def attribute_vector(positive_codes, negative_codes):
    """Mean code of the images with an attribute minus the mean of those without."""
    positive_codes, negative_codes = np.atleast_2d(positive_codes), np.atleast_2d(negative_codes)
    if positive_codes.shape[1] != negative_codes.shape[1]:
        raise ValueError("positive and negative codes have different dimensions")
    return np.mean(positive_codes, axis=0) - np.mean(negative_codes, axis=0)


def edit(code, vector, scales):
    """code + s * vector for each scale s: shape (len(scales), latent_dim)."""
    code, vector = np.asarray(code, np.float64), np.asarray(vector, np.float64)
    if vector.shape != code.shape:
        raise ValueError(f"the vector has shape {vector.shape}, the code {code.shape}")
    return code[None] + np.asarray(scales, np.float64)[:, None] * vector[None]


def latent_statistics(z_mean, z_log_var):
    """Per-dimension KL, mean and spread of the codes, and active units."""
    from cvae.evaluation import metrics

    kl = metrics.kl_per_dimension(z_mean, z_log_var)
    return {"images": int(len(z_mean)),
            "active_units": metrics.active_units(z_mean),
            "kl_total": float(kl.sum()),
            "kl_per_dimension": kl.tolist(),
            "mean_per_dimension": np.mean(z_mean, axis=0).tolist(),
            "std_per_dimension": np.std(z_mean, axis=0).tolist(),
            "posterior_std_per_dimension": np.exp(0.5 * np.mean(z_log_var, axis=0)).tolist()}


# --- the same, from images to images --------------------------------------------


def code_of(model, image_or_code):
    """A latent code: a code passes through; an image (H, W, C) gives its posterior mean."""
    array = np.asarray(image_or_code)
    if array.ndim == 1:
        if len(array) != model.config.latent_dim:
            raise ValueError(f"a code needs {model.config.latent_dim} values, got {len(array)}")
        return array.astype(np.float64)
    return model.encode(array)[0][0].astype(np.float64)


def interpolation(model, start, end, steps=8, mode="slerp"):
    """Decoded faces along the way from `start` to `end` (images or codes)."""
    return model.decode(interpolate(code_of(model, start), code_of(model, end), steps, mode))


def traversal(model, image, dimensions=None, values=np.linspace(-3, 3, 7), count=8):
    """A grid of faces, a row per dimension set to each of `values` with the other
    dimensions of the image's code fixed; by default the `count` dimensions
    this image's code uses most (by KL)."""
    z_mean, z_log_var = model.encode(np.asarray(image))
    if dimensions is None:
        dimensions = most_informative_dimensions(z_mean, z_log_var, count)
    grid = traverse(z_mean[0], dimensions, values)
    faces = model.decode(grid.reshape(-1, grid.shape[-1]))
    return faces.reshape(grid.shape[:2] + faces.shape[1:]), list(dimensions)


def attribute(model, positive_images, negative_images):
    """The attribute vector between two sets of images' posterior means."""
    return attribute_vector(model.encode(positive_images)[0], model.encode(negative_images)[0])


def edited(model, image, vector, scales):
    """The image's face with `vector` added at each scale (0 = its reconstruction)."""
    return model.decode(edit(code_of(model, image), vector, scales))
