"""The stock face detector behind the face-rate metric and the aligner."""

from pathlib import Path

import numpy as np
from PIL import Image

from cvae.data.detection import contains_face, detect_faces, face_rate, gray

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



_CONCURRENT_FIRST_USE = """
import threading
from cvae.data import detection

errors = []

def first_use():
    # Each thread keeps reaching for a cascade until it has one, so that some
    # tries land inside OpenCV's import however the threads are scheduled.
    while True:
        try:
            detection.cascade(detection.FACE_CASCADE)
            return
        except AttributeError as error:
            errors.append(repr(error))

threads = [threading.Thread(target=first_use) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(errors), errors[:1])
"""


def test_many_threads_can_load_a_cascade_first_at_once():
    # cv2's bootstrap swaps its module in sys.modules mid-import; threads that
    # imported it together got a module without `cv2.data`, and most folder
    # compressions failed. A fresh interpreter each time, where OpenCV is not
    # imported yet; without the import lock every try fails.
    import subprocess
    import sys

    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", _CONCURRENT_FIRST_USE],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("0 "), result.stdout
