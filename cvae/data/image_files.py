"""Reading image files: folders of photos, framed as the training data
frames a face, decoded in parallel into uint8 arrays."""

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cvae.errors import CvaeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
_NAMED_IN_WARNING = 5


class SkippedFilesWarning(UserWarning):
    """Some input files could not be read and were left out."""


class NoFaceWarning(UserWarning):
    """--align auto found no face in some files and used their centred square."""


class NoFaceError(ValueError):
    """--align on found no face in a file."""


ALIGN_MODES = ("auto", "on", "off")
# The largest photo read: 50 megapixels (a 40-megapixel camera's full
# frame fits). A decoded image takes 3 bytes a pixel, so this bounds one
# file's memory at 150 MB, and a tiny "decompression bomb" file cannot
# claim gigabytes.
MAX_MEGAPIXELS = 50


class ImageTooLargeError(ValueError):
    """An image with more pixels than MAX_MEGAPIXELS."""


@dataclasses.dataclass(frozen=True)
class Framing:
    """How a photo becomes a face crop: a fixed `crop_box` (left, top, width,
    height) wins; else `align` "on" or "auto" frames the `face_index`-th
    largest face like the training data (`cvae.data.align`), "auto" falling back
    to the centred square when there is none; "off" takes the centred square."""

    crop_box: tuple = None
    align: str = "off"
    face_index: int = 0

    def __post_init__(self):
        if self.align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}, got {self.align!r}")

    @property
    def aligning(self):
        return self.crop_box is None and self.align != "off"


def as_framing(value):
    """A Framing from None, a crop box tuple or a Framing."""
    if isinstance(value, Framing):
        return value
    return Framing(crop_box=tuple(value) if value is not None else None)


def require_exists(path):
    """`path` as a Path; CvaeError naming it if there is nothing there."""
    path = Path(path)
    if not path.exists():
        raise CvaeError(f"no such file or directory: {path}")
    return path


def list_image_files(folder):
    """Image files under `folder`, recursively, in a stable (sorted) order."""
    folder = require_exists(folder)
    if not folder.is_dir():
        raise CvaeError(f"not a directory: {folder}")
    paths = []
    visited = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        # Linked folders are followed, but each real folder only once: a link
        # back to a parent would otherwise recurse without end.
        real = os.path.realpath(root)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        paths.extend(Path(root) / name for name in files
                     if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(paths)


def load_image(path, image_size, channels=3, framing=None):
    """One image file (a path, or a binary file object) -> uint8 array
    (image_size, image_size, channels); see `load_face`."""
    return load_face(path, image_size, channels, framing)[0]


def load_face(path, image_size, channels=3, framing=None, placement=None):
    """One image file -> (uint8 array (image_size, image_size, channels), Placement).

    Any mode (gray, RGBA, palette, CMYK, 16-bit) is converted; transparency is
    composited onto white; EXIF rotation is applied. The crop is then taken
    as `framing` says (a crop box, the aligned face, or the centred square;
    `placement`, when given, is used instead of detecting the face again) and
    resized with an antialiasing filter. The Placement says where it came
    from. Raises OSError/ValueError if unreadable, NoFaceError if
    framing.align is "on" and no face is found.
    """
    from cvae.data.align import warp

    framing = as_framing(framing)
    image = open_photo(path, channels)
    placement = face_placement(image, framing, placement, image_size)
    if placement.aligned:
        crop = warp(np.asarray(image), placement, image_size)
        return crop.reshape(image_size, image_size, -1), placement
    return crop_and_resize(image, image_size, framing.crop_box), placement


def face_placement(image, framing=None, placement=None, image_size=None):
    """Where `framing` takes the crop of an opened (Pillow) photo: the aligned
    face's Placement, or the crop box's, or the centred square's. A known
    `placement` is used instead of searching the photo again. Raises
    NoFaceError if framing.align is "on" and no face is found. With "auto",
    a square photo of `image_size` pixels in which no face is found is taken
    as framed already (see below)."""
    from cvae.data.align import Placement, find_face

    framing = as_framing(framing)
    if framing.aligning:
        if placement is None:
            placement = find_face(np.asarray(image.convert("RGB")), framing.face_index)
        if placement is not None and placement.aligned:
            return placement
        if framing.align == "on":
            raise NoFaceError("no face found (--align on)")
        if image_size is not None and image.size == (image_size, image_size):
            # A crop already at the model's size: the detector misses some
            # faces framed like the training data, and this one is taken as
            # framed, as `align.find_face` takes a square photo whose face it
            # finds where the training data puts it, so it comes back in the
            # frame it went in and nobody is warned of a centred square.
            return Placement(image_size / 2.0, image_size / 2.0, float(image_size),
                             float(image_size), aligned=True)
    left, top, right, bottom = _crop_rectangle(image.size, framing.crop_box)
    return Placement.from_box(left, top, right - left, bottom - top)


def open_photo(path, channels=3):
    """An image file (path or binary file object) as a Pillow image in RGB
    (channels 3) or L (channels 1): EXIF rotation applied, transparency on white."""
    if isinstance(path, (str, os.PathLike)):
        if not os.path.isfile(path):
            # Opening a named pipe would block for ever; a dangling link cannot be read.
            raise OSError("not a regular file (a dangling link, a pipe or a device)")
        if os.path.getsize(path) == 0:
            raise OSError("empty file")
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 megapixels; the limit below is checked first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_MEGAPIXELS * 1_000_000:
                    raise ImageTooLargeError(
                        f"too many pixels: {width * height / 1e6:.0f} megapixels "
                        f"({width}x{height}), the limit is {MAX_MEGAPIXELS}")
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_mode(image, "RGB" if channels == 3 else "L")
    except Image.DecompressionBombError as error:
        # Pillow refuses before we see the size; its message holds the count.
        counts = re.findall(r"\((\d+) pixels\)", str(error))
        size = f"{int(counts[0]) / 1e6:.0f} megapixels" if counts else "far too many"
        raise ImageTooLargeError(f"too many pixels: {size}, the limit is {MAX_MEGAPIXELS}") \
            from None


def describe_image_error(error):
    """The one-line message every command gives for a photo it cannot use."""
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        return "not an image (or a format Pillow cannot read)"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def crop_and_resize(image, image_size, crop_box=None):
    image = image.crop(_crop_rectangle(image.size, crop_box))
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).reshape(image_size, image_size, -1)


def _to_mode(image, mode):
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float images: rescale their range to 8 bits first.
        values = np.asarray(image, dtype=np.float64)
        high = values.max() or 1.0
        image = Image.fromarray(np.clip(values / high * 255.0, 0, 255).astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(mode)


def _crop_rectangle(size, crop_box):
    width, height = size
    if crop_box is None:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return (left, top, left + side, top + side)
    left, top, box_width, box_height = crop_box
    if left < 0 or top < 0 or left + box_width > width or top + box_height > height:
        raise ValueError(f"crop box {tuple(crop_box)} does not fit in a {width}x{height} image")
    return (left, top, left + box_width, top + box_height)


def reader_threads():
    # Decoding and encoding images release the GIL for most of their time.
    return min(8, (os.cpu_count() or 1) * 2)


def load_images(paths, image_size, channels=3, framing=None, workers=None, progress=False,
                warn=True):
    """Decode many files in parallel -> (uint8 array (N, H, W, C), skipped).

    `skipped` lists (path, reason) for files that could not be used; one
    SkippedFilesWarning counts them (unless warn=False: the caller reports them).
    When aligning, each file's face placement is cached (see `PlacementCache`),
    so a folder is searched for faces once, and one NoFaceWarning counts the
    files that fell back to their centred square.
    """
    paths = list(paths)
    framing = as_framing(framing)
    cache = PlacementCache(framing) if framing.aligning else None
    fallbacks = []
    workers = workers or reader_threads()
    progress_bar = _progress_bar(len(paths)) if progress else None
    # Filled in place: stacking a list of arrays would briefly need twice the memory.
    images = np.empty((len(paths), image_size, image_size, channels), np.uint8)
    count, skipped = 0, []

    def read(path):
        try:
            known = cache.get(path) if cache is not None else None
            array, placement = load_face(path, image_size, channels, framing, known)
            if cache is not None:
                cache.put(path, placement)
                if not placement.aligned:
                    fallbacks.append(path)
            return array, None
        except (OSError, ValueError, SyntaxError) as error:
            # Pillow raises these for corrupt, truncated, empty or odd files.
            return None, str(error) or type(error).__name__

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for index, (path, (array, reason)) in enumerate(zip(paths, pool.map(read, paths))):
            if array is None:
                skipped.append((path, reason))
            else:
                images[count] = array
                count += 1
            if progress_bar is not None and (index % 256 == 0 or index + 1 == len(paths)):
                progress_bar.update(index + 1)
    if cache is not None:
        cache.save()
    if fallbacks:
        names = ", ".join(str(path) for path in fallbacks[:_NAMED_IN_WARNING])
        more = (f" and {len(fallbacks) - _NAMED_IN_WARNING} more"
                if len(fallbacks) > _NAMED_IN_WARNING else "")
        warnings.warn(f"no face found in {len(fallbacks)} file(s), which use their centred "
                      f"square instead: {names}{more}", NoFaceWarning, stacklevel=2)
    if skipped and warn:
        warn_skipped(skipped)
    return images[:count], skipped


class PlacementCache:
    """Face placements found in image files, kept across runs in one JSON file
    (under $CVAE_CACHE, default ~/.cache/cvae), keyed by the file's real path,
    size and modification time, the face index and the align mode (auto
    takes a crop at the model's size with no face found as framed, which on
    must not), so an edited file is searched again. A file with no face is
    remembered too."""

    def __init__(self, framing):
        self.face_index, self.align = framing.face_index, framing.align
        root = Path(os.environ.get("CVAE_CACHE") or Path.home() / ".cache" / "cvae")
        self.path = root / "face_placements.json"
        try:
            self.entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def _key(self, path):
        if not isinstance(path, (str, os.PathLike)):
            return None
        try:
            stat = os.stat(path)
        except OSError:
            return None
        text = (f"{os.path.realpath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{self.face_index}"
                f"|{self.align}")
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def get(self, path):
        from cvae.data.align import Placement

        entry = self.entries.get(self._key(path))
        return None if entry is None else Placement(**entry)

    def put(self, path, placement):
        key = self._key(path)
        if key is not None and key not in self.entries:
            self.entries[key] = dataclasses.asdict(placement)
            self.changed = True

    def save(self):
        if not self.changed:
            return
        from cvae.atomic import write_text

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text(self.path, json.dumps(self.entries))
        except OSError as error:
            warnings.warn(f"could not save the face placements to {self.path}: {error}",
                          stacklevel=3)


def warn_skipped(skipped):
    """One warning for all skipped (path, reason) pairs, naming the first few."""
    names = ", ".join(f"{path} ({reason})" for path, reason in skipped[:_NAMED_IN_WARNING])
    more = f" and {len(skipped) - _NAMED_IN_WARNING} more" if len(skipped) > _NAMED_IN_WARNING else ""
    warnings.warn(f"skipped {len(skipped)} unusable file(s): {names}{more}",
                  SkippedFilesWarning, stacklevel=2)


def _progress_bar(total):
    # Deferred: reading images must not pay for importing Keras. Quietly: the
    # bar is all that reading should print, not TensorFlow's start-up lines.
    from cvae.quiet import load_backend_quietly

    load_backend_quietly()
    import keras

    return keras.utils.Progbar(total, unit_name="image")


