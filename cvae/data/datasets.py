"""Datasets: a folder, a .npy/.npz array or a pack of WebP faces, split
into training and validation by a stable key, and batched for `fit`
(tf.data on TensorFlow, a PyDataset elsewhere).

Decoding happens once, with Pillow, into an in-memory uint8 array; each
epoch then only gathers, flips and batches from that cache. Unreadable files
are skipped and reported in one warning.
"""


import concurrent.futures
import functools
import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from cvae.data.image_files import (
    IMAGE_EXTENSIONS,
    crop_and_resize,
    list_image_files,
    load_images,
    reader_threads,
    require_exists,
)
from cvae.errors import CvaeError

ARRAY_EXTENSIONS = (".npy", ".npz")


def load_array(path, image_size, channels=3):
    """A .npy/.npz of images (N, H, W[, C]), uint8 or float in [0, 1] -> uint8 array."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                loaded = loaded[_array_key(loaded)]
        array = loaded
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise CvaeError(f"cannot read array file {path}: {error}") from None
    return as_images(array, image_size, channels, path)


def as_images(array, image_size, channels, path):
    """Images (N, H, W[, C]), uint8 or float in [0, 1], read from `path` ->
    uint8 (N, image_size, image_size, channels)."""
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
        raise CvaeError(f"{path}: expected images shaped (N, H, W[, C]), got {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise CvaeError(f"{path}: expected uint8 or float images, got {array.dtype}")
        array = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0).astype(np.uint8)
    array = array[..., :3] if array.shape[-1] == 4 else array
    if array.shape[-1] != channels:
        array = np.repeat(array, 3, axis=-1) if channels == 3 else _luminance(array)
    if array.shape[1:3] != (image_size, image_size):
        array = np.stack([_resize_array(image, image_size) for image in array])
    return array


def _array_key(npz):
    for key in ("images", "x", "arr_0"):
        if key in npz.files:
            return key
    if not npz.files:
        raise KeyError("the archive holds no arrays")
    return npz.files[0]


def _luminance(rgb):
    weights = np.array([0.299, 0.587, 0.114])
    return np.round(rgb @ weights).astype(np.uint8)[..., None]


def _resize_array(image, image_size):
    pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    return crop_and_resize(pil, image_size)


def in_validation(key, validation_fraction):
    """Deterministic split by a hash of the file's relative path (or index):
    the same file always lands on the same side, on any machine, and adding
    files never moves existing ones across."""
    return zlib.crc32(str(key).encode("utf-8")) / 2 ** 32 < validation_fraction


def read_dataset(source, image_size, channels=3, framing=None, validation_fraction=0.0,
                 progress=False):
    """A folder, array file or pack -> (train uint8 array, validation uint8 array).

    With validation_fraction 0 everything is in the first array.
    """
    images, keys = read_keyed(source, image_size, channels, framing, progress)
    to_validation = np.array([in_validation(key, validation_fraction) for key in keys], bool)
    return images[~to_validation], images[to_validation]


def read_keyed(source, image_size, channels=3, framing=None, progress=False):
    """A folder, array file or pack -> (uint8 images, their keys): each
    image's path within the folder, or its index in the array, which
    `in_validation` splits by. Unreadable files are left out, with a warning."""
    source = require_exists(source)
    if source.is_file():
        if source.suffix.lower() not in ARRAY_EXTENSIONS:
            raise CvaeError(f"{source}: expected a folder of images or a .npy/.npz file")
        if is_pack(source):
            images, keys = read_pack(source)
            images = as_images(images, image_size, channels, source)
        else:
            images = load_array(source, image_size, channels)
            keys = [str(index) for index in range(len(images))]
    else:
        paths = list_image_files(source)
        if not paths:
            raise CvaeError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {source}")
        if progress:
            print(f"reading {len(paths)} images from {source}", flush=True)
        images, skipped = load_images(paths, image_size, channels, framing, progress=progress)
        unread = {path for path, _ in skipped}
        keys = [path.relative_to(source).as_posix() for path in paths if path not in unread]
    if len(images) == 0:
        raise CvaeError(f"no readable images in {source}")
    return images, keys


# --- packs: a training set as one small file ---------------------------------
#
# Each face WebP-encoded (about 1.5 kB at 128x128 and quality 75, 37 dB from
# JPEG originals: far above any reconstruction's error), with the keys that
# split it, so a pack trains on the same split as its source. Made for
# machines a training set must be sent to (docs/training.md, "On a GPU").

PACK_QUALITY = 75
_PACK_ARRAYS = ("webp_bytes", "webp_offsets", "keys")


def is_pack(path):
    if Path(path).suffix.lower() != ".npz":
        return False
    try:
        with np.load(path, allow_pickle=False) as archive:
            return set(_PACK_ARRAYS) <= set(archive.files)
    except (OSError, ValueError, EOFError):
        return False


def require_pack_quality(quality):
    if not 1 <= quality <= 100:
        raise CvaeError(f"the WebP quality must be 1 to 100, got {quality}")


def encode_pack(images, keys, quality=PACK_QUALITY):
    """uint8 images and their keys -> the pack's arrays, which `read_pack`
    reads back from an .npz of them (`cvae pack` writes one)."""
    require_pack_quality(quality)

    def webp(image):
        buffer = io.BytesIO()
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(
            buffer, "WEBP", quality=quality)
        return buffer.getvalue()

    with concurrent.futures.ThreadPoolExecutor(reader_threads()) as pool:
        encoded = list(pool.map(webp, images))
    return {"webp_bytes": np.frombuffer(b"".join(encoded), np.uint8),
            "webp_offsets": np.cumsum([0] + [len(piece) for piece in encoded]).astype(np.int64),
            "keys": np.array(list(keys), dtype=str)}


def read_pack(path):
    """A pack -> (uint8 images (N, H, W, C), keys)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            payload, offsets, keys = (archive[name] for name in _PACK_ARRAYS)
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise CvaeError(f"cannot read pack {path}: {error}") from None
    if len(offsets) != len(keys) + 1 or offsets[-1] != len(payload):
        raise CvaeError(f"{path}: a damaged pack (its offsets do not fit its bytes)")

    def decoded(index):
        piece = payload[offsets[index]:offsets[index + 1]].tobytes()
        with Image.open(io.BytesIO(piece)) as image:
            return np.asarray(image)

    try:
        with concurrent.futures.ThreadPoolExecutor(reader_threads()) as pool:
            images = list(pool.map(decoded, range(len(keys))))
    except (OSError, ValueError, SyntaxError) as error:
        raise CvaeError(f"{path}: a damaged pack ({error})") from None
    images = np.stack(images) if images else np.zeros((0, 1, 1, 3), np.uint8)
    return (images[..., None] if images.ndim == 3 else images), [str(key) for key in keys]


def random_subset(images, count, seed=0):
    """At most `count` of `images` (None: all of them), chosen at random, in
    their original order."""
    if count is None or len(images) <= count:
        return images
    return images[_chosen(len(images), count, seed)]


def read_subset(source, count, image_size, channels=3, framing=None, seed=0):
    """At most `count` images (None: all) of a folder or array file, chosen at random.

    For a folder the files are chosen before any is decoded, so taking 1,000
    images of a large folder costs 1,000 decodes; when every file is readable
    the choice is the one `random_subset` makes on the whole folder.
    """
    source = Path(source)
    if not source.is_dir():
        return random_subset(read_dataset(source, image_size, channels, framing)[0], count, seed)
    paths = list_image_files(source)
    if not paths:
        raise CvaeError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {source}")
    if count is not None and len(paths) > count:
        paths = [paths[index] for index in _chosen(len(paths), count, seed)]
    images, _ = load_images(paths, image_size, channels, framing)
    if len(images) == 0:
        raise CvaeError(f"no readable images in {source}")
    return images


def _chosen(total, count, seed):
    return np.sort(np.random.default_rng(seed).choice(total, count, replace=False))


def make_dataset(images, batch_size, shuffle=True, flip=False, seed=None):
    """A uint8 image array -> batches of uint8 for `fit`, shuffled each epoch
    if `shuffle`, flipped left-right at random if `flip`.

    The model converts to float itself, so the pipeline moves 4x fewer bytes.
    On TensorFlow a prefetched tf.data pipeline; on the other backends, which
    may have no TensorFlow, a `keras.utils.PyDataset` over the array.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        return _tf_dataset(images, batch_size, shuffle, flip, seed)
    return _image_batches_class()(images, batch_size, shuffle, flip, seed)


def _tf_dataset(images, batch_size, shuffle, flip, seed):
    import tensorflow as tf  # Deferred: only training needs TensorFlow here.

    images = tf.constant(images)
    dataset = tf.data.Dataset.range(int(images.shape[0]))
    if shuffle:
        dataset = dataset.shuffle(int(images.shape[0]), seed=seed, reshuffle_each_iteration=True)
    # Batch the indices and gather whole batches: one op per batch, not per image.
    dataset = dataset.batch(batch_size).map(lambda index: tf.gather(images, index))
    if flip:
        dataset = dataset.map(tf.image.random_flip_left_right)
    # No autotuning: its background thread sleeps ever longer between rounds
    # (10 s and more after a while), and destroying an iterator waits for it,
    # so every epoch of `fit` ended with a stall of up to that long. Batches
    # are cheap gathers from memory; two in flight keep the model fed.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(2).with_options(options)


@functools.cache
def _image_batches_class():
    # Defined on first use: it subclasses a Keras class, and reading images
    # must not pay for importing Keras.
    import keras

    class ImageBatches(keras.utils.PyDataset):
        """Batches gathered from an in-memory uint8 array, in a new order each
        epoch, with random left-right flips: tf.data's pipeline for backends
        without TensorFlow. Gathers from memory are cheap, so the batches are
        made on the training thread."""

        def __init__(self, images, batch_size, shuffle=True, flip=False, seed=None):
            super().__init__()
            self.images = images
            self.batch_size = batch_size
            self.shuffle = shuffle
            self.flip = flip
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(images))
            self.on_epoch_end()

        def __len__(self):
            return -(-len(self.images) // self.batch_size)

        def __getitem__(self, index):
            batch = self.images[self.order[index * self.batch_size:(index + 1) * self.batch_size]]
            if self.flip:
                flipped = self.rng.random(len(batch)) < 0.5
                batch[flipped] = batch[flipped, :, ::-1]
            return batch

        def on_epoch_end(self):
            if self.shuffle:
                self.rng.shuffle(self.order)

    return ImageBatches

