"""The face aligner on a real photo (the public-domain astronaut): moved,
scaled, turned and padded into larger canvases, it must find the same crop."""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvae.data.align import Placement, find_face, locate_face, paste_into, warp

ASTRONAUT = Path(__file__).resolve().parent.parent / "data" / "astronaut.png"


@pytest.fixture(scope="module")
def photo():
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


@pytest.fixture(scope="module")
def reference(photo):
    placement = find_face(photo)
    assert placement is not None and placement.aligned
    return placement


def _transformed(photo, scale, angle, offset, canvas):
    """The photo scaled, turned by `angle` degrees (clockwise on screen) about
    its centre, and placed at `offset` in a grey canvas; with the map of
    photo points into it."""
    import cv2

    height, width = photo.shape[:2]
    radians = math.radians(angle)
    linear = scale * np.array([[math.cos(radians), -math.sin(radians)],
                               [math.sin(radians), math.cos(radians)]])
    centre = np.array([width / 2.0, height / 2.0])
    target = np.array(offset) + scale * centre

    def move(point):
        return linear @ (np.asarray(point) - centre) + target

    # OpenCV maps pixel indices: index = edge - 0.5 on both sides.
    matrix = np.hstack([linear, (move(centre - 0.5) + 0.5 - linear @ (centre - 0.5)
                                 - 0.5)[:, None]])
    out = cv2.warpAffine(photo, matrix, canvas, flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    return out, move


@pytest.mark.parametrize("scale, angle, offset, canvas", [
    (1.0, 0.0, (300, 150), (1100, 800)),     # padded, off centre
    (0.6, 0.0, (40, 260), (700, 600)),       # smaller, low in the frame
    (1.7, 0.0, (-100, 20), (900, 900)),      # larger, part of it cut off
    (1.0, 12.0, (150, 150), (800, 800)),     # turned clockwise
    (0.8, -18.0, (200, 100), (800, 700)),    # turned the other way, smaller
])
def test_the_crop_follows_the_face(photo, reference, scale, angle, offset, canvas):
    moved, move = _transformed(photo, scale, angle, offset, canvas)
    found = find_face(moved)
    assert found is not None
    expected_centre = move((reference.center_x, reference.center_y))
    side = reference.width * scale
    # Face centre within a few pixels of the crop (a 128-pixel crop's 3 px),
    # size within 10 %, angle within a few degrees.
    error = math.hypot(found.center_x - expected_centre[0], found.center_y - expected_centre[1])
    assert error < 0.03 * side, (found, expected_centre)
    assert abs(found.width / side - 1) < 0.10
    assert abs(found.angle - (reference.angle + angle)) < 4.0


def test_the_aligned_crop_is_level(photo, reference):
    moved, _ = _transformed(photo, 1.0, 15.0, (150, 150), (800, 800))
    upright = warp(photo, reference, 128)
    turned_back = warp(moved, find_face(moved), 128)
    difference = np.abs(upright.astype(float) - turned_back.astype(float)).mean()
    assert difference < 20, difference


def test_no_face_gives_none():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (20, 30, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    assert find_face(smooth) is None
    assert locate_face(np.zeros((50, 50, 3), np.uint8)) is None


def test_a_missing_face_index_gives_none(photo):
    assert find_face(photo, face_index=5) is None


def test_paste_into_keeps_the_photo_size_and_places_the_face(photo, reference):
    face = warp(photo, reference, 128)
    pasted = paste_into(photo, np.full_like(face, 255), reference)
    assert pasted.shape == photo.shape and pasted.dtype == np.uint8
    centre = (int(reference.center_y), int(reference.center_x))
    assert (pasted[centre] == 255).all()
    # Far from the face the photo is untouched.
    np.testing.assert_array_equal(pasted[-5:, -5:], photo[-5:, -5:])
    # Pasting the face's own crop back changes little.
    again = paste_into(photo, face, reference)
    assert np.abs(again.astype(float) - photo.astype(float)).mean() < 2


def test_placement_report_and_box():
    placement = Placement.from_box(10, 20, 30, 40)
    assert placement.to_dict() == {"aligned": False, "box": [10, 20, 30, 40], "angle": 0.0}


def test_a_face_framed_already_comes_back_in_its_own_frame(tmp_path):
    from PIL import Image

    from cvae.data.image_files import Framing, load_face

    astronaut = Path(__file__).resolve().parent.parent / "data" / "astronaut.png"
    crop, placement = load_face(astronaut, 128, framing=Framing(align="on"))
    assert placement.aligned
    Image.fromarray(crop).save(tmp_path / "framed.png")
    again, kept = load_face(tmp_path / "framed.png", 128, framing=Framing(align="auto"))
    # Not cropped again by the detector's jitter: the same pixels, the whole image.
    assert kept.aligned and kept.to_dict()["box"] == [0.0, 0.0, 128.0, 128.0]
    np.testing.assert_array_equal(again, crop)


def test_paste_into_puts_back_the_face_and_leaves_the_crops_corners_alone(photo, reference):
    # The crop's corners are background and hair, which a reconstruction
    # draws lighter and softer: pasted too, they left a light band.
    face = warp(photo, reference, 128)
    pasted = paste_into(photo, np.full_like(face, 255), reference)
    recropped = warp(pasted, reference, 128).astype(int)
    original = face.astype(int)
    for corner in (np.s_[2:14, 2:14], np.s_[2:14, -14:-2], np.s_[-14:-2, 2:14],
                   np.s_[-14:-2, -14:-2]):
        assert np.abs(recropped[corner] - original[corner]).mean() < 3
    assert (recropped[54:74, 54:74] >= 250).all()  # The face itself is replaced.
