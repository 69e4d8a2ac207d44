"""Find, level and frame a face in any photo the way the training data frames it.

The shipped model was trained on UTKFace's tight, aligned crops. A photo
framed any other way (a portrait with shoulders, a snapshot with the face off
centre) is far from what it knows, so every command that reads a face photo
first aligns it:

1. find faces with OpenCV's stock frontal-face cascade on a copy of the photo
   at most `DETECTION_SIDE` pixels wide (twice the size of a photo smaller
   than `SMALL_PHOTO_SIDE`), with a replicated border so that a face touching
   the edge is still found; if none is found upright, try the
   photo turned by each of `TRIAL_ANGLES`;
2. take the largest face (or the `face_index`-th by size) and find its eyes
   with the eye cascade; the line between them gives the face's tilt;
3. look again, upright: the face is detected once more in a level crop
   around it, which gives a box that means the same as on the training data;
4. place the square crop so the face box sits where `FRAMING` (measured on
   UTKFace by the same detector) says it sits in a training image.

A `Placement` records where the crop came from (centre, size, angle) in the
photo's pixels: the reports print it, and `paste_into` uses it to put a
decoded face back into the photo.
"""

import dataclasses
import math

import numpy as np

from cvae.data.detection import detect_eyes, detect_faces, gray, opencv

# Photos are searched at this side or less: a face of a portrait is still
# 60+ pixels wide there, and detection stays fast.
DETECTION_SIDE = 400
# Photos smaller than this are searched at twice their size: the cascade
# misses many faces under about 50 pixels (a third of those CelebA's 89x109
# photos missed were found so).
SMALL_PHOTO_SIDE = 200
# Faces narrower than this share of the photo's longer side are not looked
# for (a face to compress fills a good part of its photo).
MIN_FACE_SHARE = 1 / 14
_SCALE_FACTOR = 1.15
# When no face is found upright: the photo is also searched turned by these.
TRIAL_ANGLES = (-25.0, 25.0, -45.0, 45.0)
# The eye cascade's boxes must lie in the upper part of the face box.
_EYE_BAND = 0.6

# Where the detector's face box falls in a UTKFace training image, as
# fractions of the image side: box centre (x, y), box width and the distance
# between the eyes, as (mean, standard deviation) over the training images in
# which a face (5,134 of 5,422) and both eyes (4,080) were found. The box is
# wider than the image: UTKFace's crops are tighter than the cascade's boxes.
# Produced by:
#   python research/alignment/measure_framing.py --data ../shared/faces/utkface/train --max-images 5500
FRAMING = {
    "face_center_x": (0.5005, 0.0259),
    "face_center_y": (0.4201, 0.0295),
    "face_width": (1.051, 0.0985),
    "eye_distance": (0.3952, 0.038),
}


# Where the inner face (brows, eyes, nose, mouth, chin) lies in a framed
# crop, as a share of its side: an ellipse around the mean landmarks of the
# measured framing above (eyes 0.395 of the side apart, face centre at
# 0.42 from the top).
INNER_FACE = {"center": (0.5, 0.52), "spread": (0.17, 0.22)}


def face_region_weights(image_size, strength):
    """(image_size, image_size) float32 weights with mean 1: 1 + `strength`
    inside the inner face, falling off as a Gaussian, 1 far outside, then
    scaled to mean 1 so a weighted sum over pixels keeps its size."""
    centre, spread = INNER_FACE["center"], INNER_FACE["spread"]
    grid = (np.arange(image_size, dtype=np.float64) + 0.5) / image_size
    dx = ((grid - centre[0]) / spread[0]) ** 2
    dy = ((grid - centre[1]) / spread[1]) ** 2
    weights = 1.0 + strength * np.exp(-0.5 * (dy[:, None] + dx[None, :]))
    return (weights / weights.mean()).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Placement:
    """A square or rectangular crop of a photo: centre, size and tilt, in the
    photo's pixels. `angle` is the eye line's tilt in the photo in degrees
    (positive: clockwise on screen); the crop is turned by it, so the eyes
    come out level. `aligned` is False for a plain centred or given box."""

    center_x: float
    center_y: float
    width: float
    height: float
    angle: float = 0.0
    aligned: bool = False

    @classmethod
    def from_box(cls, left, top, width, height):
        return cls(left + width / 2.0, top + height / 2.0, float(width), float(height))

    def to_dict(self):
        return {"aligned": self.aligned,
                "box": [round(v, 1) for v in (self.center_x - self.width / 2.0,
                                              self.center_y - self.height / 2.0,
                                              self.width, self.height)],
                "angle": round(self.angle, 2)}

    def matrix(self, size):
        """The 2x3 affine map from a pixel of the size x size crop to the photo."""
        radians = math.radians(self.angle)
        cos, sin = math.cos(radians), math.sin(radians)
        sx, sy = self.width / size, self.height / size
        half = (size - 1) / 2.0
        # Placements are in edge coordinates (pixel i covers [i, i + 1]); the
        # map is between pixel indices (OpenCV's convention: pixel i's centre
        # is at i): photo index = centre - 0.5 + R(angle) diag(sx, sy) (index - half).
        linear = np.array([[cos * sx, -sin * sy], [sin * sx, cos * sy]])
        offset = np.array([self.center_x, self.center_y]) - 0.5 - linear @ np.array([half, half])
        return np.hstack([linear, offset[:, None]])


@dataclasses.dataclass(frozen=True)
class DetectedFace:
    """A face found in a photo, in the photo's edge coordinates: the box's
    centre and width in the level frame, the eye line's tilt in degrees, and
    the eye centres (None when the eye cascade did not find both)."""

    center: tuple
    width: float
    angle: float
    eyes: tuple = None


# A square photo whose face the aligner would frame within these bounds of
# the whole photo is framed already (about 3 standard deviations of the
# measured framing): it is kept as it is, so that it comes back in the frame
# it went in, rather than cropped again by the detector's jitter.
_FRAMED_ALREADY = {"center": 0.08, "size": (0.8, 1.25), "angle": 10.0}


def find_face(image, face_index=0):
    """The `Placement` that frames the face like a training image, or None.

    image: uint8 (H, W, 3) RGB. face_index: 0 for the largest face, 1 for the
    next, and so on (None when there are not that many). A square photo
    already framed like a training image gives the whole photo.
    """
    face = locate_face(image, face_index)
    if face is None:
        return None
    placement = framed(face)
    height, width = image.shape[:2]
    if width == height and _framed_already(placement, width):
        return Placement(width / 2.0, height / 2.0, float(width), float(height), 0.0,
                         aligned=True)
    return placement


def _framed_already(placement, side):
    bounds = _FRAMED_ALREADY
    return (abs(placement.center_x - side / 2.0) <= bounds["center"] * side
            and abs(placement.center_y - side / 2.0) <= bounds["center"] * side
            and bounds["size"][0] <= placement.width / side <= bounds["size"][1]
            and abs(placement.angle) <= bounds["angle"])


def framed(face):
    """The crop placing a `DetectedFace` where FRAMING puts a face box in a
    training image."""
    side = face.width / FRAMING["face_width"][0]
    # The crop centre's offset from the face box's centre, in the level frame.
    dx = (0.5 - FRAMING["face_center_x"][0]) * side
    dy = (0.5 - FRAMING["face_center_y"][0]) * side
    radians = math.radians(face.angle)
    cx = face.center[0] + math.cos(radians) * dx - math.sin(radians) * dy
    cy = face.center[1] + math.sin(radians) * dx + math.cos(radians) * dy
    return Placement(cx, cy, side, side, face.angle, aligned=True)


def locate_face(image, face_index=0):
    """The `face_index`-th largest `DetectedFace` of an RGB photo, or None;
    see the module's docstring for the steps."""
    cv2 = opencv()

    luminance = gray(image)
    longest = max(luminance.shape)
    scale = 2.0 if longest < SMALL_PHOTO_SIDE else min(1.0, DETECTION_SIDE / longest)
    small = luminance if scale == 1.0 else cv2.resize(
        luminance, None, fx=scale, fy=scale,
        interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    # Faces with both eyes found come first: the cascade's false positives
    # (clothes, patterns) rarely have eyes. A turned trial must find them.
    candidates, fallback = [], []
    for trial in (0.0,) + TRIAL_ANGLES:
        for center, width in _faces_turned(small, trial):
            eyes = _eyes(small, Placement(center[0], center[1], width, width, trial))
            if eyes is not None:
                candidates.append((center, width, trial, eyes))
            elif trial == 0.0:
                fallback.append((center, width, trial, None))
        if len(candidates) > face_index:
            break
    candidates = sorted(candidates, key=lambda c: -c[1]) + fallback
    if len(candidates) <= face_index:
        return None
    center, width, angle, eyes = candidates[face_index]
    if eyes is not None:
        (lx, ly), (rx, ry) = eyes
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
    # Upright again: a level crop twice the face's width around it, searched
    # only for boxes of about the face's size.
    upright = Placement(center[0], center[1], 2.0 * width, 2.0 * width, angle)
    crop_side = 96
    level = warp(small, upright, crop_side)
    refined = [((x + w / 2.0, y + h / 2.0), float(w)) for x, y, w, h in detect_faces(
        level, int(0.3 * crop_side), _SCALE_FACTOR, int(0.75 * crop_side))]
    if refined:
        (rx, ry), rwidth = min(refined, key=lambda f: (f[0][0] - crop_side / 2) ** 2
                               + (f[0][1] - crop_side / 2) ** 2)
        if abs(rx - crop_side / 2) < crop_side / 4 and abs(ry - crop_side / 2) < crop_side / 4:
            center = _to_photo(upright, crop_side, (rx, ry))
            width = rwidth * upright.width / crop_side
    return DetectedFace(center=(center[0] / scale, center[1] / scale), width=width / scale,
                        angle=angle,
                        eyes=None if eyes is None else tuple((x / scale, y / scale)
                                                             for x, y in eyes))


def _to_photo(placement, size, point):
    """A point of the size x size crop at `placement`, in the photo (edge coordinates)."""
    x, y = placement.matrix(size) @ np.array([point[0] - 0.5, point[1] - 0.5, 1.0]) + 0.5
    return float(x), float(y)


def _faces_turned(luminance, angle):
    """Face boxes of the image turned by `angle` degrees, as (centre, width) in
    the unturned image's pixels, largest first."""
    cv2 = opencv()

    height, width = luminance.shape
    border = max(height, width) // 8
    min_size = max(24, int(MIN_FACE_SHARE * max(height, width)))
    if angle == 0.0:
        padded = cv2.copyMakeBorder(luminance, border, border, border, border,
                                    cv2.BORDER_REPLICATE)
        return [((x + w / 2.0 - border, y + h / 2.0 - border), float(w))
                for x, y, w, h in detect_faces(padded, min_size, _SCALE_FACTOR)]
    side = int(math.hypot(height, width)) + 2 * border
    whole = Placement(width / 2.0, height / 2.0, side, side, angle)
    turned = warp(luminance, whole, side)
    return [(_to_photo(whole, side, (x + w / 2.0, y + h / 2.0)), float(w))
            for x, y, w, h in detect_faces(turned, min_size, _SCALE_FACTOR)]


def _eyes(luminance, face):
    """The eye centres ((left x, y), (right x, y)) of the face box at the
    `Placement` face, in the photo; None unless one is found on each side."""
    crop_side = 96
    crop = warp(luminance, face, crop_side)
    found = [(x + w / 2.0, y + h / 2.0) for x, y, w, h in detect_eyes(
        crop[:int(_EYE_BAND * crop_side)], crop_side // 10, crop_side // 3)]
    left = [e for e in found if e[0] < crop_side / 2]
    right = [e for e in found if e[0] >= crop_side / 2]
    if not left or not right:
        return None
    (lx, ly), (rx, ry) = left[0], right[0]
    distance = math.hypot(rx - lx, ry - ly)
    tilt = math.degrees(math.atan2(ry - ly, rx - lx))
    if not 0.2 * crop_side < distance < 0.7 * crop_side or abs(tilt) > 30:
        return None
    return _to_photo(face, crop_side, left[0]), _to_photo(face, crop_side, right[0])


def warp(image, placement, size):
    """The size x size crop of `image` at `placement` (bilinear; an image more
    than twice the crop's resolution is first shrunk by area averaging)."""
    cv2 = opencv()

    shrink = min(placement.width, placement.height) / size
    if shrink > 2.0:
        height, width = image.shape[:2]
        new_width = max(1, round(width * 1.5 / shrink))
        new_height = max(1, round(height * 1.5 / shrink))
        image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
        fx, fy = new_width / width, new_height / height
        placement = dataclasses.replace(
            placement, center_x=placement.center_x * fx, center_y=placement.center_y * fy,
            width=placement.width * fx, height=placement.height * fy)
    return cv2.warpAffine(np.ascontiguousarray(image), placement.matrix(size), (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


# What paste_into puts back: an ellipse around the face in the framed crop
# (centre and semi-axes as shares of its side), its edge blended over the
# outer `feather` of its radius. The crop's corners are background and hair,
# which the model draws softer and lighter than the photo's: pasting the
# whole square left a light band around the face.
PASTE_REGION = {"center": (0.5, 0.53), "semi_axes": (0.40, 0.47)}


def paste_into(photo, face, placement, feather=0.25):
    """The photo with the face of `face` (size x size, uint8 or [0, 1]) put
    back at `placement`: the ellipse of PASTE_REGION, its edge blended over
    `feather` of its radius; the rest of the crop stays the photo's."""
    cv2 = opencv()

    photo = np.asarray(photo)
    face = np.asarray(face)
    if face.dtype != np.uint8:
        face = np.clip(np.round(face * 255.0), 0, 255).astype(np.uint8)
    size = face.shape[0]
    face = face.reshape(size, size, -1)
    if photo.ndim == 2:
        photo = photo[..., None]
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    (centre_x, centre_y), (axis_x, axis_y) = PASTE_REGION["center"], PASTE_REGION["semi_axes"]
    radius = np.sqrt(((grid[None, :] - centre_x) / axis_x) ** 2
                     + ((grid[:, None] - centre_y) / axis_y) ** 2)
    mask = np.clip((1.0 - radius) / feather, 0.0, 1.0).astype(np.float32)
    # photo pixel -> crop pixel, the inverse of the crop's map.
    inverse = cv2.invertAffineTransform(placement.matrix(size))
    shape = (photo.shape[1], photo.shape[0])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    placed = cv2.warpAffine(face, inverse, shape, flags=flags, borderMode=cv2.BORDER_CONSTANT)
    weight = cv2.warpAffine(mask, inverse, shape, flags=flags,
                            borderMode=cv2.BORDER_CONSTANT)[..., None]
    placed = placed.reshape(photo.shape)
    blended = weight * placed.astype(np.float32) + (1.0 - weight) * photo.astype(np.float32)
    result = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return result[..., 0] if result.shape[-1] == 1 else result
