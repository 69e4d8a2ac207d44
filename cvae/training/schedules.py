"""The optimizer's learning rate: a warm-up, then constant or a cosine."""

import keras


def learning_rate_schedule(peak, warmup_steps=0, total_steps=None, cosine=False):
    """Adam's learning rate: raised linearly from zero to `peak` over
    `warmup_steps`, then constant, or with `cosine` decayed to zero at
    `total_steps`.

    Why the warm-up: Adam's first steps move every weight by about the full
    rate, each in its gradient's direction. The latent heads read 4,096
    unnormalized features, so at 1e-3 two such steps moved the log-variance
    to about +16 and the KL to millions of nats in some seeds, and the
    decoder, fed noise, learned to ignore the code (benchmarks/training_stability.py).
    """
    if total_steps is None:
        total_steps = warmup_steps + 1
    warmup = min(warmup_steps, total_steps - 1)
    if not cosine and warmup <= 0:
        return peak
    # alpha is the final rate as a share of the peak: 1 keeps it constant after the warm-up.
    alpha = 0.0 if cosine else 1.0
    if warmup <= 0:
        return keras.optimizers.schedules.CosineDecay(peak, total_steps, alpha=alpha)
    return keras.optimizers.schedules.CosineDecay(0.0, total_steps - warmup, alpha=alpha,
                                                  warmup_target=peak, warmup_steps=warmup)


def default_optimizer():
    """Adam with `cvae train`'s default rate and warm-up (`learning_rate_schedule`)."""
    from cvae.training.runs import TrainOptions

    defaults = TrainOptions(data=None)
    return keras.optimizers.Adam(learning_rate_schedule(defaults.learning_rate,
                                                        defaults.warmup_steps))
