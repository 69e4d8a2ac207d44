"""Compressing, decompressing and reconstructing files in batches, one
failure at a time.

Each input that cannot be handled (missing, not an image, a bad `.cvae`, an
output that exists) is reported through `on_error(path, message)` and
skipped; the rest of the batch goes on. Outputs are written atomically.
"""

import sys
from pathlib import Path

import numpy as np

from cvae.atomic import atomic_path, refuse_to_replace
from cvae.batching import batches
from cvae.data import image_files
from cvae.data.detection import opencv
from cvae.errors import CvaeError
from cvae.figures import save_image

COMPRESSED_SUFFIX = ".cvae"
_BATCH = 64
# Threads reading (and aligning) images; the detector releases the GIL.
_READERS = 4


def expand_inputs(inputs, on_error, suffixes):
    """Files named, plus the (non-hidden) files directly inside folders named
    whose names end in one of `suffixes`; the other files of those folders are
    counted in one warning line."""
    paths, ignored = [], []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            found = [p for p in files if p.name.lower().endswith(suffixes)]
            ignored += [p for p in files if not p.name.lower().endswith(suffixes)]
            if not found:
                on_error(path, f"the folder holds no {' or '.join(suffixes)} files")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            on_error(path, "no such file or directory")
    if ignored:
        names = ", ".join(p.name for p in ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        print(f"cvae: warning: skipped {len(ignored)} file(s) in the folders that are not "
              f"{' or '.join(suffixes)}: {names}", file=sys.stderr, flush=True)
    return paths


class _Outputs:
    """Output paths in `out_dir`: same stem, new suffix; never two inputs onto one
    output, and no existing file replaced unless `force`."""

    def __init__(self, out_dir, suffix, force):
        self.out_dir, self.suffix, self.force = Path(out_dir), suffix, force
        self.claimed = set()

    def claim(self, source):
        target = self.out_dir / (source.stem + self.suffix)
        if target in self.claimed:
            raise CvaeError(f"another input already writes {target}")
        refuse_to_replace(target, self.force)
        self.claimed.add(target)
        return target


def compress_files(codec, inputs, out_dir, mode, step=None, force=False, framing=None,
                   on_error=None, on_fallback=None, max_bytes=None, rung=None, scorer=None,
                   on_outlier=None):
    """Compress images to `out_dir/<stem>.cvae`, a batch at a time (read on
    several threads, encoded together), with a progress bar for more than one
    batch; returns the list of (source, target, bytes, placement).
    `on_fallback(path, placement)` hears of each photo that --align auto could
    not align; with a `cvae.anomaly.Scorer`, `on_outlier(path, score,
    threshold)` of each image that does not look like the training faces."""
    written = []
    outputs = _Outputs(out_dir, COMPRESSED_SUFFIX, force)
    for ready in framed_batches(inputs, outputs, codec.config, framing, on_error, on_fallback):
        images = np.stack([image for _, _, image, _ in ready])
        # One encoder pass serves the file and the score.
        encoded = codec.model.encode(images) if scorer is not None else None
        contents = codec.compress_batch(images, mode, step, max_bytes, rung, errors="return",
                                        encoded=encoded)
        if scorer is not None:
            scores, flagged = scorer.outliers(codec.model, images, encoded)
            for index in np.flatnonzero(flagged):
                on_outlier(ready[index][0], float(scores[index]), scorer.threshold)
        for (path, target, _, placement), content in zip(ready, contents):
            if isinstance(content, CvaeError):
                on_error(path, str(content))
                continue
            with atomic_path(target) as temporary:
                temporary.write_bytes(content)
            written.append((path, target, len(content), placement))
    return written


def reconstruct_files(codec, inputs, out_dir, force=False, framing=None, on_error=None,
                      on_fallback=None, side_by_side=False, paste_back=False):
    """Encode and decode images without quantization (the model's own
    reconstruction, what the codec's float16 mode gives up to rounding) to
    `out_dir/<stem>.png`; returns the list of (source, target, placement).

    side_by_side: write the framed input and its reconstruction next to each other.
    paste_back: write the whole photo with the reconstructed face put back
    where it was framed (`cvae.data.align.paste_into`); with side_by_side, the
    photo and that result next to each other."""
    from cvae.data.align import paste_into

    written = []
    outputs = _Outputs(out_dir, ".png", force)
    for ready in framed_batches(inputs, outputs, codec.config, framing, on_error, on_fallback):
        framed = np.stack([image for _, _, image, _ in ready])
        reconstructions = codec.decode(codec.encode(framed))
        for (path, target, image, placement), reconstruction in zip(ready, reconstructions):
            if paste_back:
                try:
                    # Opened again rather than kept: a batch of large photos
                    # would otherwise all stay in memory.
                    image = np.asarray(image_files.open_photo(path, codec.config.channels))
                except (OSError, ValueError) as error:
                    on_error(path, image_files.describe_image_error(error))
                    continue
                reconstruction = paste_into(image, reconstruction, placement)
            if side_by_side:
                reconstruction = np.concatenate([image, reconstruction], axis=1)
            save_image(reconstruction, target)
            written.append((path, target, placement))
    return written


def framed_batches(inputs, outputs, config, framing, on_error, on_fallback=None):
    """Lists of (path, target, image, placement) for the readable images among
    `inputs`, framed to the model's size, a batch at a time (read on several
    threads), with a progress bar; each failure goes to `on_error`. With
    `outputs` None, nothing is written and each target is None."""
    import concurrent.futures

    paths = expand_inputs(inputs, on_error, image_files.IMAGE_EXTENSIONS)

    def read(path):
        try:
            image, placement = image_files.load_face(path, config.image_size, config.channels, framing)
            return image, placement, None
        except (CvaeError, OSError, ValueError) as error:
            return None, None, image_files.describe_image_error(error)

    # Outputs are claimed here, in order, not in the reader threads: which of
    # two inputs with one stem wins must not depend on thread timing.
    claimed = []
    for path in paths:
        try:
            claimed.append((path, None if outputs is None else outputs.claim(path)))
        except CvaeError as error:
            on_error(path, str(error))
    if image_files.as_framing(framing).aligning:
        opencv()  # imported whole before the readers start (see cvae.data.detection)
    with _progress(len(claimed)) as progress, \
            concurrent.futures.ThreadPoolExecutor(_READERS) as pool:
        for chunk in batches(claimed, _BATCH):
            ready = []
            for (path, target), (image, placement, error) in zip(
                    chunk, pool.map(read, [path for path, _ in chunk])):
                if error is not None:
                    on_error(path, error)
                    continue
                if on_fallback is not None:
                    on_fallback(path, placement)
                ready.append((path, target, image, placement))
            if ready:
                yield ready
            progress.update(len(chunk))


def _progress(total):
    """A progress bar on stderr for work of more than one batch; silent otherwise."""
    from tqdm import tqdm

    return tqdm(total=total, unit="image", disable=total <= _BATCH, file=sys.stderr,
                dynamic_ncols=True)


def decompress_files(codec, inputs, out_dir, force=False, on_error=None, paste=None):
    """Decompress `.cvae` files to `out_dir/<stem>.png`; returns the list of (source, target).

    paste: (photo uint8 array, Placement): the decoded face is put back into
    this photo at the placement (see `cvae.data.align.paste_into`) instead."""
    from cvae.data.align import paste_into

    outputs = _Outputs(out_dir, ".png", force)
    ready = []
    for path in expand_inputs(inputs, on_error, (COMPRESSED_SUFFIX,)):
        try:
            target = outputs.claim(path)
            code = codec.latent_code(path.read_bytes())
        except (CvaeError, OSError) as error:
            on_error(path, str(error))
            continue
        ready.append((path, target, code))
    written = []
    with _progress(len(ready)) as progress:
        for chunk in batches(ready, _BATCH):
            images = codec.decode(np.stack([code for _, _, code in chunk]))
            for (path, target, _), image in zip(chunk, images):
                if paste is not None:
                    image = paste_into(paste[0], image, paste[1])
                save_image(image, target)
                written.append((path, target))
            progress.update(len(chunk))
    return written
