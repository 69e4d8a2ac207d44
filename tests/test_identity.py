"""The identity judge: dlib's face recogniser over 128x128 crops (where installed)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from cvae.evaluation import identity

pytestmark = pytest.mark.skipif(not identity.available(),
                                reason='the judge is optional: pip install "cvae[identity]"')

ASTRONAUT = Path(__file__).resolve().parent.parent / "data" / "astronaut.png"


def _face():
    """The public-domain astronaut's face, framed by the aligner as every
    command frames a photo (the judge expects the training data's framing)."""
    from cvae.data.image_files import Framing, load_face

    face, _ = load_face(ASTRONAUT, 128, framing=Framing(align="on"))
    return face


def _thumbnail(face, side):
    small = Image.fromarray(face).resize((side, side), Image.BICUBIC)
    return np.asarray(small.resize(face.shape[:2], Image.BICUBIC))


def test_a_face_is_itself_after_a_blur_and_not_after_its_features_are_gone():
    face = _face()
    blurred = np.asarray(Image.fromarray(face).filter(ImageFilter.GaussianBlur(2)))
    # The same colours with no features: the face's mean everywhere.
    featureless = np.broadcast_to(face.mean(axis=(0, 1)).astype(np.uint8), face.shape)
    candidates = [face, blurred, _thumbnail(face, 24), _thumbnail(face, 8), _thumbnail(face, 4),
                  featureless, face[::-1]]
    distances = identity.distances(np.stack([face] * len(candidates)), np.stack(candidates))
    assert distances[0] == pytest.approx(0.0, abs=1e-5)
    assert max(distances[1:3]) < identity.SAME_PERSON_DISTANCE
    assert min(distances[4:]) > identity.SAME_PERSON_DISTANCE
    # Less of the face, further from it: 24, 8 and 4 pixels a side.
    assert distances[2] < distances[3] < distances[4]


def test_metrics_count_matches_against_their_own_original():
    face = _face()
    noise = np.random.default_rng(0).integers(0, 256, face.shape, dtype=np.uint8)
    result = identity.identity_metrics(np.stack([face, face]), np.stack([face, noise]))
    assert result["match"] == 0.5 and result["images"] == 2
    assert result["distance"] > identity.SAME_PERSON_DISTANCE / 2
    # Floats in [0, 1] are the same images.
    assert identity.embed(face[None] / 255.0) == pytest.approx(identity.embed(face[None]), abs=1e-3)
    with pytest.raises(ValueError, match="originals against"):
        identity.distances(face[None], np.stack([face, face]))


def test_evaluate_reports_whether_reconstructions_are_the_same_person():
    from cvae.evaluation.evaluate import evaluate, format_report
    from cvae.model.config import VAEConfig
    from cvae.model.vae import VAE

    faces = np.stack([_face(), _face()[:, ::-1], _thumbnail(_face(), 24), _face()])
    config = VAEConfig(image_size=128, filters=(8, 16, 16, 16), dense_units=(16,), latent_dim=4)
    results = evaluate(VAE(config, seed=0), faces, iwae_samples=1, log=lambda message: None)
    # An untrained model's grey blur is nobody.
    assert results["identity"]["match"] == 0.0 and results["identity"]["images"] == 4
    assert "same person (identity judge)" in format_report(results)
    off = evaluate(VAE(config, seed=0), faces, iwae_samples=1, identity=False,
                   log=lambda message: None)
    assert "identity" not in off
