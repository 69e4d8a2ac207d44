"""Is a reconstruction still the same person? A face recogniser as the judge.

dlib's face recognition ResNet (128-d embeddings; two faces are the same
person when their embeddings are closer than 0.6, the library's threshold,
99.4% on LFW) embeds each 128x128 crop the same way for originals and
reconstructions:

1. dlib's 5-point landmark predictor, run in a fixed box (the crop less
   8 px on each side: the crops are framed already, so no detector);
2. `dlib.get_face_chip(image, landmarks, 150, 0.25)`;
3. `compute_face_descriptor` of the chip.

**The judge is never the teacher**: nothing in training or in choosing a
checkpoint may use it. A model tuned to one network's embedding can fool
it without looking like the person.

The networks ship inside `face-recognition-models` and dlib comes as the
prebuilt `dlib-bin` wheel: `pip install "cvae[identity]"`. Nothing is
downloaded at run time.
"""

import importlib.util
import threading
from pathlib import Path

import numpy as np

from cvae.errors import CvaeError

# dlib's own threshold for "the same person".
SAME_PERSON_DISTANCE = 0.6
# The landmark predictor runs in the crop less this many pixels on each side
# (at 128x128; scaled with the crop).
_BOX_MARGIN = 8
_CHIP_SIZE = 150
_CHIP_PADDING = 0.25
_MODELS = {"landmarks": "shape_predictor_5_face_landmarks.dat",
           "recogniser": "dlib_face_recognition_resnet_model_v1.dat"}

_lock = threading.Lock()
_loaded = {}


def available():
    """True where the optional judge (`cvae[identity]`) is installed."""
    return (importlib.util.find_spec("dlib") is not None
            and importlib.util.find_spec("face_recognition_models") is not None)


def _networks():
    """dlib's landmark predictor and recogniser, loaded once."""
    with _lock:
        if not _loaded:
            if not available():
                raise CvaeError("the identity judge needs dlib and its networks: "
                                "pip install \"cvae[identity]\"")
            import dlib

            # The package's folder, found without importing it: its __init__
            # imports pkg_resources, which new setuptools releases no longer have.
            spec = importlib.util.find_spec("face_recognition_models")
            folder = Path(next(iter(spec.submodule_search_locations))) / "models"
            _loaded["landmarks"] = dlib.shape_predictor(str(folder / _MODELS["landmarks"]))
            _loaded["recogniser"] = dlib.face_recognition_model_v1(
                str(folder / _MODELS["recogniser"]))
            _loaded["dlib"] = dlib
        return _loaded


def embed(images):
    """(N, H, W, 3) face crops, uint8 or float in [0, 1] -> (N, 128) float32 embeddings."""
    networks = _networks()
    dlib = networks["dlib"]
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
        images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    height, width = images.shape[1:3]
    margin = round(_BOX_MARGIN * width / 128)
    box = dlib.rectangle(margin, margin, width - 1 - margin, height - 1 - margin)
    embeddings = []
    for image in images:
        image = np.ascontiguousarray(image)
        landmarks = networks["landmarks"](image, box)
        chip = dlib.get_face_chip(image, landmarks, _CHIP_SIZE, _CHIP_PADDING)
        embeddings.append(np.asarray(networks["recogniser"].compute_face_descriptor(chip)))
    return np.asarray(embeddings, dtype=np.float32).reshape(len(images), -1)


def distances(originals, reconstructions):
    """Per pair, the distance between the two faces' embeddings."""
    if len(originals) != len(reconstructions):
        raise ValueError(f"{len(originals)} originals against {len(reconstructions)} "
                         f"reconstructions")
    return np.linalg.norm(embed(originals) - embed(reconstructions), axis=1)


def identity_metrics(originals, reconstructions, original_embeddings=None):
    """"match": the share of reconstructions within SAME_PERSON_DISTANCE of
    their own original; "distance": the mean distance; "chance": the match
    rate of each original against another face's reconstruction (what two
    different people give). original_embeddings: `embed(originals)`, when
    the caller holds it already (comparing many codecs on the same faces)."""
    first = embed(originals) if original_embeddings is None else original_embeddings
    second = embed(reconstructions)
    own = np.linalg.norm(first - second, axis=1)
    other = np.linalg.norm(first - np.roll(second, 1, axis=0), axis=1) if len(first) > 1 else own
    return {"match": float(np.mean(own < SAME_PERSON_DISTANCE)),
            "distance": float(np.mean(own)),
            "chance": float(np.mean(other < SAME_PERSON_DISTANCE)),
            "images": int(len(first))}
