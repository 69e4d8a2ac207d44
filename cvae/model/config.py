"""The one configuration that defines a VAE: architecture and objective.

A model is fully described by a `VAEConfig`; the encoder, decoder and loss
are all built from it, and it is what a saved `.keras` file records.
"""

import dataclasses
from typing import Tuple, Union

LIKELIHOODS = ("gaussian", "l1", "bernoulli")
NORMALIZATIONS = ("none", "batch", "group")
BLOCKS = ("plain", "residual")
DECODER_SCALES = ("learned", "calibrated")


# The weight of the second-stage VAE's own KL term when `cvae.model.second_stage`
# trains one (research/model/notebook.md, "Second-stage variants"): below 1 it
# reconstructs the codes more closely, and the fitted map to its aggregate
# posterior keeps its samples where the codes are.
SECOND_STAGE_KL_WEIGHT = 0.5


# What builds and drives the adversarial term (VAEConfig's comments say how).
DISCRIMINATOR_SETTINGS = ("adversarial_weight", "adversarial_start_step",
                          "discriminator_filters", "discriminator_scales")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    # Architecture.
    image_size: int = 128
    channels: int = 3
    filters: Tuple[int, ...] = (32, 64, 128)
    encoder_extra_convs: int = 0
    decoder_extra_convs: int = 1
    dense_units: Tuple[int, ...] = (128, 64)
    latent_dim: int = 32
    normalization: str = "none"
    activation: str = "relu"
    # "plain": each extra conv is conv -> norm -> activation; "residual": each
    # pair of extra convs is a residual block x + conv(act(conv(act(x)))).
    block: str = "plain"
    # 0: the decoder's last Conv2DTranspose outputs the image. N > 0: it
    # outputs N feature maps at full resolution, refined by one more block
    # before a 3x3 Conv2D makes the image (capacity where the detail is).
    output_filters: int = 0
    # Bound the posterior: means softly within +-10, log-variances softly
    # below 2 (cvae.model.layers.SoftClamp). Without it, Adam's steps on the latent
    # heads, which read thousands of unnormalized features, sometimes threw
    # the log-variance to +20 or more early in training: a KL of billions of
    # nats, then a collapsed posterior (benchmarks/training_stability.py).
    bounded_posterior: bool = False
    # Objective: reconstruction_weight * reconstruction NLL + beta * KL.
    likelihood: str = "l1"
    # Scale of the decoder's Gaussian (sigma) or Laplace (b) likelihood:
    # a fixed positive number, "learned" (one trainable scalar) or
    # "calibrated" (the batch's maximum-likelihood scale, Rybkin et al. 2021).
    decoder_scale: Union[float, str] = 1.0
    beta: float = 1.0
    kl_warmup_steps: int = 0
    # 1 for a VAE; 0 trains the KL alone (the lectures' "KL only" experiment).
    reconstruction_weight: float = 1.0
    # Extra weight of the inner face (brows, eyes, nose, mouth) in the
    # reconstruction term, where the aligner's framing puts it
    # (cvae.data.align.face_region_weights): 0 weighs every pixel alike; 2 weighs
    # the face's centre 3x the far background, the map scaled to mean 1.
    # Identity lives in the face, while a per-pixel likelihood spends its
    # nats on background, hair and lighting in proportion to their area.
    face_weight: float = 0.0
    # Weight of a Laplacian-pyramid term added to the reconstruction loss:
    # a Laplace likelihood per band-pass level, each with its batch's
    # maximum-likelihood scale, so fine detail weighs as much as coarse
    # shape however small its errors become (see losses.pyramid_loss).
    pyramid_weight: float = 0.0
    # Weight of an adversarial term (0: none). A PatchGAN discriminator
    # (networks.build_patch_discriminator) learns beside the VAE to tell
    # images from reconstructions, with a hinge loss, as in the VQGAN and
    # Stable Diffusion autoencoders but without their pretrained perceptual
    # loss. Any per-pixel likelihood predicts the mean of what the code leaves
    # uncertain, which is blur; the discriminator penalises blur itself. The
    # weight is rescaled every step by the ratio of the likelihood's and the
    # adversarial term's gradient norms at the decoder's last layer (Esser et
    # al. 2021), so it means the same however many nats the likelihood has.
    adversarial_weight: float = 0.0
    # Optimizer steps of plain VAE training before the adversarial term starts.
    adversarial_start_step: int = 0
    # Widths of the discriminator's stride-2 4x4 convolutions.
    discriminator_filters: Tuple[int, ...] = (64, 128, 256)
    # How many image scales the discriminator judges: 1 is the image alone;
    # N > 1 adds a PatchGAN of its own for each of the image average-pooled
    # 2, 4, ... times (pix2pixHD's multi-scale discriminator, Wang et al.
    # 2018), whose patches span coarser texture than the full-size one's.
    discriminator_scales: int = 1
    # Hidden layer widths of the second-stage VAE over the latent codes
    # (Dai & Wipf 2019). Empty: the model has none. Set only by
    # cvae.model.second_stage.fit_second_stage, which trains it.
    second_stage_units: Tuple[int, ...] = ()
    # The second stage's learned decoder scale: its Gaussian's spread around
    # the decoded code, which sampling adds back (0: decode the mean alone).
    # Set with the second stage.
    second_stage_noise: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        object.__setattr__(self, "dense_units", tuple(int(u) for u in self.dense_units))
        object.__setattr__(self, "discriminator_filters",
                           tuple(int(f) for f in self.discriminator_filters))
        object.__setattr__(self, "second_stage_units",
                           tuple(int(u) for u in self.second_stage_units))
        _require(self.image_size >= 2 ** len(self.filters),
                 f"image_size {self.image_size} is too small for {len(self.filters)} stride-2 stages")
        _require(self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}")
        _require(len(self.filters) >= 1 and min(self.filters) > 0, "filters must be positive")
        _require(self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        _require(self.likelihood in LIKELIHOODS,
                 f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        _require(self.normalization in NORMALIZATIONS,
                 f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if isinstance(self.decoder_scale, str):
            _require(self.decoder_scale in DECODER_SCALES,
                     f"decoder_scale must be a positive number or one of {DECODER_SCALES}")
        else:
            _require(self.decoder_scale > 0, "decoder_scale must be positive")
        _require(self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        _require(self.reconstruction_weight >= 0,
                 f"reconstruction_weight must be >= 0, got {self.reconstruction_weight}")
        _require(self.kl_warmup_steps >= 0, "kl_warmup_steps must be >= 0")
        _require(self.block in BLOCKS, f"block must be one of {BLOCKS}, got {self.block!r}")
        _require(self.output_filters >= 0, "output_filters must be >= 0")
        _require(self.pyramid_weight >= 0, "pyramid_weight must be >= 0")
        _require(self.face_weight >= 0, "face_weight must be >= 0")
        _require(self.adversarial_weight >= 0, "adversarial_weight must be >= 0")
        _require(self.adversarial_start_step >= 0, "adversarial_start_step must be >= 0")
        _require(len(self.discriminator_filters) >= 1 and min(self.discriminator_filters) > 0,
                 "discriminator_filters must be positive")
        _require(self.discriminator_scales >= 1, "discriminator_scales must be >= 1")
        _require(self.image_size >= 2 ** (self.discriminator_scales - 1),
                 f"image_size {self.image_size} is too small for "
                 f"{self.discriminator_scales} discriminator scales")
        _require(all(u > 0 for u in self.second_stage_units),
                 "second_stage_units must be positive")
        _require(self.second_stage_noise >= 0, "second_stage_noise must be >= 0")

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, self.channels)

    @property
    def bottleneck_size(self):
        """Side of the smallest feature map: each stride-2 'same' conv rounds up."""
        size = self.image_size
        for _ in self.filters:
            size = -(-size // 2)
        return size

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def without_discriminator(self):
        """The same VAE with the adversarial term's settings at their defaults:
        a model that only codes and samples (a second stage's) leaves the
        discriminator, and how it was built, in the training run."""
        return self.replace(**{field.name: field.default for field in dataclasses.fields(self)
                               if field.name in DISCRIMINATOR_SETTINGS})

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        _require(not unknown, f"unknown configuration keys: {sorted(unknown)}")
        return cls(**values)


def _require(condition, message):
    if not condition:
        raise ValueError(message)


PRESETS = {
    # Exactly the network of the reference slides (lecture 004) and its L1 loss.
    "seed": VAEConfig(),
    # The default for faces: deeper, group-normalized, a larger latent, and a
    # Gaussian decoder whose scale is learned, so the reconstruction term is a
    # true log-likelihood. With a learned scale and beta = 1 the model keeps
    # buying nats of KL for tiny gains (the gain per nat shrinks as the error
    # does); beta = 8 spends about 64*ln(8) = 130 fewer nats at a cost of a few
    # percent in MSE, which keeps codes compact and samples closer to the prior.
    "faces": VAEConfig(
        filters=(32, 64, 128, 256, 256),
        encoder_extra_convs=1,
        decoder_extra_convs=1,
        dense_units=(),
        latent_dim=128,
        normalization="group",
        activation="silu",
        likelihood="gaussian",
        decoder_scale="learned",
        beta=8.0,
        kl_warmup_steps=2000,
    ),
}
# Model v2, chosen by the study in research/model/notebook.md (its `residual`
# candidate): the same widths without normalization, ReLU, a residual block
# per stage each way (zero-initialised, so training starts stable), a
# full-resolution output stage, and beta = 1 (a true ELBO; the second stage,
# `cvae second-stage`, makes N(0, I) samples faces instead of a larger beta).
# It trained 1.9x as fast as `faces` per image on this CPU and reconstructed
# better at the same wall-clock budget.
PRESETS["faces-v2"] = PRESETS["faces"].replace(
    normalization="none", activation="relu", block="residual",
    encoder_extra_convs=2, decoder_extra_convs=2, output_filters=16, beta=1.0,
    bounded_posterior=True)
DEFAULT_PRESET = "faces-v2"


def get_preset(name):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
