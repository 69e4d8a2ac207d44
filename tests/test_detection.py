"""The stock face detector behind the face-rate metric and the aligner."""

from pathlib import Path

import numpy as np
from PIL import Image

from cvae.detection import contains_face, detect_faces, face_rate, gray

ASTRONAUT = Path(__file__).resolve().parent.parent / "data" / "astronaut.png"


def _face_128():
    photo = Image.open(ASTRONAUT).convert("RGB")
    return np.asarray(photo.crop((150, 30, 290, 170)).resize((128, 128), Image.LANCZOS))


def test_a_real_face_counts_and_noise_does_not():
    face = _face_128()
    noise = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    assert contains_face(face)
    assert contains_face(face.astype(np.float32) / 255.0)
    assert face_rate(np.concatenate([face[None], noise])) == 0.25


def test_faces_are_found_in_a_photo_largest_first():
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    boxes = detect_faces(gray(photo))
    assert boxes, "the astronaut's face is found"
    x, y, width, height = boxes[0]
    # The face is around (220, 100) in the 512x512 photo.
    assert abs(x + width / 2 - 220) < 30 and abs(y + height / 2 - 100) < 40
    assert all(w * h <= width * height for _, _, w, h in boxes)
