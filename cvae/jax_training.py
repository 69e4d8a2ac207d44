"""Training on an accelerator with the JAX backend (KERAS_BACKEND=jax).

`cvae train` feeds `fit` from tf.data, and its steps differentiate with
TensorFlow. A GPU machine without TensorFlow trains here instead: the whole
training set sits in device memory as uint8, each step draws its batch and
its flips there, and one jitted function makes the VAE's step (and the
discriminator's) over explicit state, so no host pipeline stands between
steps. The objective is the model's own (`VAE._objective` and
`VAE._adversarial_terms`, written in keras.ops), so what is learned is what
`VAE.train_step` learns; only the gradient mechanics differ:

- the VAE's gradient is that of loss + scale * adversarial_loss, where the
  scale is adversarial_weight times the ratio of the reconstruction's and the
  adversarial term's gradient norms at the decoder's last kernel, held
  constant (as in `VAE._adversarial_gradients`);
- the discriminator's is that of its hinge loss, by its own optimizer.

The learning rate follows the wall clock, not a step count: a linear warm-up
over `warmup_steps`, then a cosine to zero at `minutes`, so a run fills its
time budget whatever the device's speed.
"""

import math
import time

import jax
import jax.numpy as jnp
import keras
import numpy as np
from keras import ops

from cvae.model import _MAX_ADVERSARIAL_SCALE, _norm, _to_unit_float

# Fetching a step's numbers waits for the device, so they are read in batches.
_LOG_EVERY_STEPS = 50


def train_on_device(model, images, minutes, batch_size, learning_rate, adversarial,
                    warmup_steps=0, seed=0, checkpoint=None, checkpoint_minutes=None,
                    max_steps=None, flip=True, log=print):
    """Train `model` (compiled, on the JAX backend) on `images` (N, H, W, C)
    uint8 for `minutes` of wall time (or `max_steps` steps, if fewer), with
    or without its adversarial term, flipping faces left-right at random
    unless `flip` is False.

    Every `checkpoint_minutes`, and at the end, the variables are written back
    into the model and `checkpoint(model)` is called. If the loss becomes NaN,
    training stops at once (the record says `diverged`): the last checkpoint
    stands, and the model's variables, whose buffers the steps consumed, are
    not to be used.
    Returns the run's record: steps, images per second, the terms' means
    every 50 steps."""
    if keras.backend.backend() != "jax":
        raise RuntimeError("cvae.jax_training needs KERAS_BACKEND=jax")
    if adversarial and model.discriminator is None:
        raise ValueError("adversarial training needs a model with a discriminator "
                         "(adversarial_weight > 0 in its configuration)")
    if len(images) < batch_size:
        raise ValueError(f"{len(images)} images are fewer than one batch of {batch_size}")
    parts = _Parts(model, adversarial)
    make_step = _adversarial_step if adversarial else _likelihood_step
    step = jax.jit(make_step(model, parts, flip), donate_argnums=(0,))
    state = parts.values()
    device_images = jnp.asarray(images)
    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    count = len(images)
    steps_per_epoch = count // batch_size
    order = rng.permutation(count)

    start = time.perf_counter()
    last_checkpoint = start
    budget = minutes * 60.0
    pending, history, step_index = [], [], 0
    compiled_at = None
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= budget or step_index == max_steps:
            break
        position = step_index % steps_per_epoch
        if position == 0 and step_index:
            order = rng.permutation(count)
        batch = jnp.asarray(order[position * batch_size:(position + 1) * batch_size])
        key, step_key = jax.random.split(key)
        rate = _rate(learning_rate, step_index, warmup_steps, elapsed / budget)
        state = parts.with_learning_rate(state, rate)
        state, logs = step(state, device_images, batch, step_key)
        pending.append(logs)
        step_index += 1
        if step_index == 1:
            jax.block_until_ready(logs)
            compiled_at = time.perf_counter()
            log(f"compiled and ran the first step in {compiled_at - start:.1f} s")
        if len(pending) == _LOG_EVERY_STEPS:
            history.append(_mean_logs(pending))
            pending = []
            if not math.isfinite(history[-1]["loss"]):
                log(f"step {step_index}: the loss is {history[-1]['loss']}; stopping")
                return _record(step_index, steps_per_epoch, batch_size, minutes,
                               time.perf_counter() - compiled_at, history, diverged=True)
            now = time.perf_counter()
            log(f"step {step_index} (epoch {step_index / steps_per_epoch:.1f}), "
                f"{(step_index - 1) * batch_size / (now - compiled_at):.0f} images/s, "
                f"lr {rate:.2e}, " + ", ".join(f"{name} {value:.4g}"
                                              for name, value in history[-1].items()))
            if checkpoint_minutes and now - last_checkpoint >= checkpoint_minutes * 60:
                parts.assign(state)
                checkpoint(model)
                last_checkpoint = now
    jax.block_until_ready(state)
    seconds = time.perf_counter() - (compiled_at or start)
    if pending:
        history.append(_mean_logs(pending))
    parts.assign(state)
    if checkpoint is not None:
        checkpoint(model)
    return _record(step_index, steps_per_epoch, batch_size, minutes, seconds, history)


def _record(steps, steps_per_epoch, batch_size, minutes, seconds, history, diverged=False):
    # The first step's time is the compilation's, so it is left out of the speed.
    return {"steps": steps, "epochs": steps / max(steps_per_epoch, 1),
            "batch_size": batch_size, "minutes": minutes,
            "images_per_second": (steps - 1) * batch_size / max(seconds, 1e-9),
            "diverged": diverged, "final": history[-1] if history else {}, "history": history}


class _Parts:
    """The variables a step reads and writes, as lists in a fixed order, and
    the model's optimizers built over them: the VAE's weights (the
    discriminator's excluded), the discriminator's, the non-trainable state
    (the sampling layer's seed, a frozen second stage) and the optimizers'."""

    def __init__(self, model, adversarial):
        self.vae = list(model.vae_weights)
        self.discriminator = (list(model.discriminator.trainable_weights)
                              if adversarial else [])
        self.fixed = list(model.non_trainable_variables)
        self.optimizer = model.optimizer
        if not self.optimizer.built:
            self.optimizer.build(self.vae)
        self.discriminator_optimizer = model.discriminator_optimizer if adversarial else None
        self.rate_index = next(index for index, variable in enumerate(self.optimizer.variables)
                               if variable is self.optimizer._learning_rate)
        self.iterations_index = next(index for index, variable
                                     in enumerate(self.optimizer.variables)
                                     if variable is self.optimizer.iterations)
        last_kernel = getattr(model, "_last_decoder_kernel", None)
        self.last_kernel_index = next((index for index, variable in enumerate(self.vae)
                                       if variable is last_kernel), None)

    def groups(self):
        optimizer_groups = [self.optimizer.variables,
                            self.discriminator_optimizer.variables
                            if self.discriminator_optimizer else []]
        return [self.vae, self.discriminator, self.fixed, *optimizer_groups]

    def values(self):
        return tuple([variable.value for variable in group] for group in self.groups())

    def optimizer_iterations(self, optimizer_values):
        return optimizer_values[self.iterations_index]

    def with_learning_rate(self, state, rate):
        optimizer_values = list(state[3])
        optimizer_values[self.rate_index] = jnp.asarray(rate, optimizer_values[self.rate_index].dtype)
        return (*state[:3], optimizer_values, *state[4:])

    def assign(self, state):
        for group, values in zip(self.groups(), state):
            for variable, value in zip(group, values):
                variable.assign(value)

    def terms(self, model, vae, discriminator, fixed, optimizer, images, adversarial):
        """The objective's terms at these values, and the non-trainable state after."""
        def objective():
            terms = model._objective(images, training=True)
            if adversarial:
                terms.update(model._adversarial_terms(images, terms["reconstructions"],
                                                      training=True))
            return terms

        variables = [*self.vae, *self.discriminator, *self.fixed, *self.optimizer.variables]
        terms, after = stateless(variables, [*vae, *discriminator, *fixed, *optimizer],
                                 objective)
        del terms["reconstructions"]
        fixed_after = after[len(self.vae) + len(self.discriminator):][:len(self.fixed)]
        return {name: ops.cast(value, "float32") for name, value in terms.items()}, fixed_after


def stateless(variables, values, function):
    """function() with `variables` reading `values` (Keras' StatelessScope):
    its result, and the variables' values after it (changed where it assigned)."""
    with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
        result = function()
    return result, [scope.get_current_value(variable) for variable in variables]


def _batch(images, indices, key, flip):
    """The batch's images as floats in [0, 1], each flipped left-right with
    probability 1/2 if `flip`."""
    batch = jnp.take(images, indices, axis=0)
    if flip:
        flipped = jax.random.bernoulli(key, 0.5, (indices.shape[0], 1, 1, 1))
        batch = jnp.where(flipped, batch[:, :, ::-1, :], batch)
    return _to_unit_float(batch)


def _likelihood_step(model, parts, flip):
    def step(state, images, indices, key):
        vae, discriminator, fixed, optimizer, discriminator_optimizer = state
        batch = _batch(images, indices, key, flip)

        def loss(vae_values):
            terms, fixed_after = parts.terms(model, vae_values, discriminator, fixed, optimizer,
                                             batch, adversarial=False)
            return terms["loss"], (terms, fixed_after)

        (_, (terms, fixed)), gradients = jax.value_and_grad(loss, has_aux=True)(vae)
        vae, optimizer = parts.optimizer.stateless_apply(optimizer, gradients, vae)
        return (vae, discriminator, fixed, optimizer, discriminator_optimizer), terms

    return step


_OUTPUTS = ("loss", "reconstruction_loss", "adversarial_loss", "discriminator_loss")


def _adversarial_step(model, parts, flip):
    weight = model.config.adversarial_weight
    start_step = model.config.adversarial_start_step

    def step(state, images, indices, key):
        vae, discriminator, fixed, optimizer, discriminator_optimizer = state
        batch = _batch(images, indices, key, flip)

        def outputs(vae_values, discriminator_values):
            terms, fixed_after = parts.terms(model, vae_values, discriminator_values, fixed,
                                             optimizer, batch, adversarial=True)
            return tuple(terms[name] for name in _OUTPUTS), (terms, fixed_after)

        _, pullback, (terms, fixed) = jax.vjp(outputs, vae, discriminator, has_aux=True)

        def cotangent(**weights):
            return tuple(jnp.asarray(weights.get(name, 0.0), "float32") for name in _OUTPUTS)

        likelihood_gradient = pullback(cotangent(reconstruction_loss=1.0))[0]
        adversarial_gradient = pullback(cotangent(adversarial_loss=1.0))[0]
        index = parts.last_kernel_index
        ratio = _norm(likelihood_gradient[index]) / (_norm(adversarial_gradient[index]) + 1e-4)
        # Before the start step the term weighs nothing and the discriminator
        # gets zero gradients, which leave Adam's state and its weights as they are.
        started = (parts.optimizer_iterations(optimizer) >= start_step).astype("float32")
        scale = jax.lax.stop_gradient(jnp.clip(ratio, 0.0, _MAX_ADVERSARIAL_SCALE)) * weight
        scale = scale * started
        gradients = pullback(cotangent(loss=1.0, adversarial_loss=scale))[0]
        discriminator_gradients = [gradient * started for gradient in
                                   pullback(cotangent(discriminator_loss=1.0))[1]]
        vae, optimizer = parts.optimizer.stateless_apply(optimizer, gradients, vae)
        discriminator, discriminator_optimizer = parts.discriminator_optimizer.stateless_apply(
            discriminator_optimizer, discriminator_gradients, discriminator)
        terms["adversarial_scale"] = scale
        return (vae, discriminator, fixed, optimizer, discriminator_optimizer), terms

    return step


def _rate(peak, step, warmup_steps, fraction):
    """Linear warm-up over `warmup_steps`, then a cosine to zero over the time budget."""
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    return peak * warmup * 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction)))


def _mean_logs(logs):
    fetched = jax.device_get(logs)
    return {name: float(np.mean([entry[name] for entry in fetched])) for name in fetched[0]}


def evaluate_on_device(model, images, batch_size=256):
    """Mean loss terms (at the full beta) and PSNR of the posterior-mean
    reconstructions of `images` (uint8), computed on the device."""
    variables = model.trainable_variables + model.non_trainable_variables
    values = [variable.value for variable in variables]

    @jax.jit
    def batch_terms(values, batch):
        unit = _to_unit_float(batch)

        def terms_and_reconstruction():
            z_mean = model.encoder(unit, training=False)[0]
            return (model._objective(unit, training=False),
                    ops.cast(model.decoder(z_mean, training=False), "float32"))

        (terms, mean_reconstruction), _ = stateless(variables, values, terms_and_reconstruction)
        squared = jnp.mean((jnp.clip(mean_reconstruction, 0.0, 1.0) - unit) ** 2, axis=(1, 2, 3))
        return ({name: ops.cast(terms[name], "float32")
                 for name in ("loss", "reconstruction_loss", "kl_loss")},
                -10.0 * jnp.log10(jnp.maximum(squared, 1e-12)))

    sums, psnrs, seen = {}, [], 0
    for begin in range(0, len(images), batch_size):
        batch = images[begin:begin + batch_size]
        terms, psnr = batch_terms(values, jnp.asarray(batch))
        for name, value in jax.device_get(terms).items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(batch)
        psnrs.append(np.asarray(psnr))
        seen += len(batch)
    result = {name: total / seen for name, total in sums.items()}
    result["psnr"] = float(np.mean(np.concatenate(psnrs)))
    result["images"] = seen
    return result


def coding_speed(model, images, batch_size=256, repeats=5):
    """Images per second through the encoder's means and through the decoder,
    jitted, on the device: the median of `repeats` timed batches after a warm-up."""
    encoder_variables = model.encoder.trainable_variables + model.encoder.non_trainable_variables
    decoder_variables = model.decoder.trainable_variables + model.decoder.non_trainable_variables

    def jitted(layer, variables):
        @jax.jit
        def run(values, inputs):
            outputs, _ = stateless(variables, values, lambda: layer(inputs, training=False))
            return outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        values = [variable.value for variable in variables]
        return lambda inputs: run(values, inputs)

    encode = jitted(model.encoder, encoder_variables)
    decode = jitted(model.decoder, decoder_variables)
    batch = _to_unit_float(jnp.asarray(images[:batch_size]))
    codes = encode(batch)
    speeds = {"batch": int(batch.shape[0])}
    for name, function, inputs in (("encode", encode, batch), ("decode", decode, codes)):
        jax.block_until_ready(function(inputs))
        times = []
        for _ in range(repeats):
            begin = time.perf_counter()
            jax.block_until_ready(function(inputs))
            times.append(time.perf_counter() - begin)
        speeds[f"{name}_images_per_second"] = speeds["batch"] / float(np.median(times))
    return speeds
