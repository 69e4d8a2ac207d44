"""OpenCV's stock Haar cascades: the face and eye detectors behind the
aligner (`cvae.data.align`) and the face-detection rate of samples.

The cascades ship inside `opencv-python-headless` 4.x (`cv2.data`), so
nothing is downloaded. A cascade object must not be used by two threads at
once (it crashes), so each thread loads its own, once.

OpenCV is imported through `opencv()` alone: cv2's bootstrap replaces its own
module in `sys.modules` part-way through the import, so a second thread that
imports it at the same moment gets a half-made module (no `cv2.data`). The
lock makes the first import whole before anyone uses it.
"""

import threading

import numpy as np

from cvae.errors import CvaeError

FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"


_per_thread = threading.local()
_import_lock = threading.Lock()


def opencv():
    """The cv2 module, imported once, whole, whichever thread asks first."""
    with _import_lock:
        import cv2
    return cv2


def cascade(name):
    cv2 = opencv()
    loaded = _per_thread.__dict__.setdefault("cascades", {})
    if name not in loaded:
        classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if classifier.empty():
            raise CvaeError(f"OpenCV could not load its cascade {name} "
                            f"(opencv-python-headless 4.x ships it; 5.x does not)")
        loaded[name] = classifier
    return loaded[name]


def gray(image):
    """uint8 (H, W, 3) RGB or float in [0, 1] -> uint8 (H, W) luminance."""
    cv2 = opencv()

    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def detect_faces(gray_image, min_size=30, scale_factor=1.1, max_size=None):
    """Face boxes (x, y, width, height), largest first.

    A box counts when the cascade found it in at least a third as many
    neighbouring windows as the best-supported box: a real face gets dozens,
    the false positives on clothes and backgrounds a handful.
    """
    boxes, support = cascade(FACE_CASCADE).detectMultiScale2(
        gray_image, scaleFactor=scale_factor, minNeighbors=3, minSize=(min_size, min_size),
        maxSize=(max_size or 0, max_size or 0))
    if len(boxes) == 0:
        return []
    support = np.reshape(support, -1)
    threshold = max(3, support.max() / 3.0)
    kept = [tuple(int(v) for v in box) for box, count in zip(np.reshape(boxes, (-1, 4)), support)
            if count >= threshold]
    return sorted(kept, key=lambda box: -box[2] * box[3])


def detect_eyes(gray_image, min_size=5, max_size=None):
    """Eye boxes (x, y, width, height) in a face's gray crop, largest first."""
    boxes = cascade(EYE_CASCADE).detectMultiScale(
        gray_image, scaleFactor=1.1, minNeighbors=3, minSize=(min_size, min_size),
        maxSize=(max_size or 0, max_size or 0))
    boxes = [tuple(int(v) for v in box) for box in np.reshape(boxes, (-1, 4))]
    return sorted(boxes, key=lambda box: -box[2] * box[3])


# The face-rate protocol: a 128x128 image is upscaled to 256x256 and given a
# 64-pixel replicated border (the cascade misses faces that touch the edge),
# and only a box at least 90 px wide counts as the face.
_RATE_SIZE = 256
_RATE_BORDER = 64
_RATE_MIN_BOX = 90


def contains_face(image):
    """True if the stock frontal-face cascade finds a face filling the image."""
    cv2 = opencv()

    enlarged = cv2.resize(gray(image), (_RATE_SIZE, _RATE_SIZE), interpolation=cv2.INTER_LINEAR)
    framed = cv2.copyMakeBorder(enlarged, *(_RATE_BORDER,) * 4, cv2.BORDER_REPLICATE)
    boxes = cascade(FACE_CASCADE).detectMultiScale(
        framed, scaleFactor=1.1, minNeighbors=3, minSize=(_RATE_MIN_BOX, _RATE_MIN_BOX))
    return len(boxes) > 0


def face_rate(images):
    """The share of images in which `contains_face` finds a face."""
    return float(np.mean([contains_face(image) for image in images]))
