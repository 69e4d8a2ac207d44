"""`cvae serve`: a one-page local web demo (Starlette, served by uvicorn).

The page (cvae/web/index.html, no asset from the internet) calls a small JSON
API; every image travels as a base64 PNG and every failure as
{"error": "..."} with status 400, so a bad upload never takes the server down.

  GET  /                 the page
  POST /api/compress     form file "image"  -> original, decompressed, bytes, ratio, PSNR, .cvae
  POST /api/decompress   form file "file"   -> decompressed
  GET  /api/generate     ?seed=&temperature=&count=&sampler= -> a grid of new faces
  GET  /api/samplers     the samplers this model offers (gmm when its mixture exists)
  POST /api/interpolate  form files "first", "second", field "steps" -> a strip
"""

import asyncio
import base64
import io
import math
import threading
from pathlib import Path

import numpy as np

from cvae.data import image_files
from cvae.errors import CvaeError
from cvae.evaluation import metrics
from cvae.figures import tiled
from cvae.sampling.samplers import available_samplers, sample_latents

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_FACES = 64
# Connections beyond this many at once are answered 503 at once (uvicorn's
# limit_concurrency) instead of queueing without end; a request that waits
# longer than REQUEST_TIMEOUT_S for the model is answered 503 too.
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_S = 60
BACKLOG = 64
PAGE = Path(__file__).resolve().parent / "web" / "index.html"


def create_app(codec, mixture=None, scorer=None):
    """The Starlette application around one `cvae.codec.Codec` (and its model);
    `mixture`, the model's ex-post Gaussian mixture, enables sampler=gmm;
    `scorer`, the model's `cvae.anomaly.Scorer`, says whether an upload looks
    like a face."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import HTMLResponse, JSONResponse
        from starlette.routing import Route
    except ImportError:
        raise CvaeError("the web demo needs its extra: pip install -e '.[demo]'") from None

    model = codec.model
    config = model.config
    # One request at a time on the model: Keras models are not made for
    # concurrent calls, and one CPU-bound request at a time is fastest anyway.
    lock = threading.Lock()
    # The model's default first, as everywhere else: the page offers it first.
    offered = available_samplers(model, mixture)

    def guarded(handler):
        async def endpoint(request):
            try:
                return JSONResponse(await asyncio.wait_for(handler(request), REQUEST_TIMEOUT_S))
            except (CvaeError, ValueError, OSError) as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            except asyncio.TimeoutError:
                return JSONResponse({"error": f"the server is busy: no answer within "
                                              f"{REQUEST_TIMEOUT_S} s; try again"},
                                    status_code=503)
        return endpoint

    def locked(function, *args):
        def call():
            with lock:
                return function(*args)
        return run_in_threadpool(call)

    async def page(request):
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def compress(request):
        form = await request.form()
        upload = await _read_upload(form, "image")
        image = _decode_image(upload, config)
        return await locked(_compress, codec, image, scorer)

    async def decompress(request):
        form = await request.form()
        name, content = await _read_upload(form, "file")

        def decoded():
            try:
                return codec.decompress_batch([content])[0]
            except CvaeError as error:
                raise CvaeError(f"{name}: {error}") from None

        image = await locked(decoded)
        return {"decompressed": _png(image), "bytes": len(content)}

    async def generate(request):
        seed = _number(request.query_params, "seed", int, 0, minimum=0)
        temperature = _number(request.query_params, "temperature", float, 1.0, minimum=0.0)
        count = _number(request.query_params, "count", int, 16)
        if not 1 <= count <= MAX_FACES:
            raise CvaeError(f"count must be between 1 and {MAX_FACES}")
        sampler = request.query_params.get("sampler") or offered[0]
        if sampler == "gmm" and mixture is None:
            raise CvaeError("this model has no ex-post mixture (see cvae generate --sampler gmm)")
        if sampler not in offered:
            raise CvaeError(f"unknown sampler {sampler!r}; this model offers "
                            f"{', '.join(offered)}")
        faces = await locked(lambda: model.decode(sample_latents(
            model, count, seed, temperature, mixture if sampler == "gmm" else None,
            sampler=sampler)))
        return {"grid": _png(tiled(faces, 8))}

    async def samplers(request):
        return JSONResponse({"samplers": offered})

    async def interpolate(request):
        from cvae.sampling.exploration import interpolation

        form = await request.form()
        first = _decode_image(await _read_upload(form, "first"), config)
        second = _decode_image(await _read_upload(form, "second"), config)
        steps = _number(form, "steps", int, 8)
        if not 2 <= steps <= 16:
            raise CvaeError("steps must be between 2 and 16")
        faces = await locked(interpolation, model, first, second, steps)
        return {"strip": _png(tiled(faces, steps))}

    return Starlette(routes=[
        Route("/", page),
        Route("/api/compress", guarded(compress), methods=["POST"]),
        Route("/api/decompress", guarded(decompress), methods=["POST"]),
        Route("/api/generate", guarded(generate), methods=["GET"]),
        Route("/api/samplers", samplers, methods=["GET"]),
        Route("/api/interpolate", guarded(interpolate), methods=["POST"]),
    ])


def _compress(codec, image, scorer=None):
    # The entropy mode needs the model's codec table; without one, int8.
    mode = "entropy" if codec.table is not None else "int8"
    # One encoder pass serves the file and the face check.
    encoded = codec.model.encode(image[None]) if scorer is not None else None
    content = codec.compress_batch(image[None], mode, encoded=encoded)[0]
    decompressed = codec.decompress_batch([content])[0]
    psnr = float(metrics.psnr(image[None] / 255.0, decompressed[None] / 255.0)[0])
    raw = int(np.prod(image.shape))
    return {"original": _png(image), "decompressed": _png(decompressed),
            "bytes": len(content), "raw_bytes": raw, "ratio": raw / len(content),
            "psnr": psnr, "mode": mode, "refine_steps": codec.refine_steps,
            "cvae": base64.b64encode(content).decode("ascii"),
            **({} if scorer is None else _face_check(codec, image, scorer, encoded))}


def _face_check(codec, image, scorer, encoded):
    scores, flagged = scorer.outliers(codec.model, image[None], encoded)
    return {"looks_like_a_face": not bool(flagged[0]), "anomaly_score": float(scores[0]),
            "anomaly_threshold": scorer.threshold}


async def _read_upload(form, name):
    upload = form.get(name)
    if upload is None or not hasattr(upload, "read"):
        raise CvaeError(f"no file was uploaded as {name!r}")
    content = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(content) > MAX_UPLOAD_BYTES:
        raise CvaeError(f"{upload.filename}: too large (the limit is "
                        f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB)")
    if not content:
        raise CvaeError(f"{upload.filename}: empty file")
    return upload.filename, content


def _decode_image(upload, config):
    from PIL import UnidentifiedImageError

    name, content = upload
    try:
        # Uploads are a person's own photos: the face is found and framed like
        # the training data, or the centred square is used when none is found.
        return image_files.load_image(io.BytesIO(content), config.image_size, config.channels,
                                      image_files.Framing(align="auto"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise CvaeError(f"{name}: {image_files.describe_image_error(error)}") from None


def _number(values, name, convert, default, minimum=None):
    """A query or form parameter: a finite number of the given type, at least `minimum`."""
    text = values.get(name)
    if text in (None, ""):
        return default
    kind = "an integer" if convert is int else "a number"
    try:
        value = convert(text)
    except ValueError:
        raise CvaeError(f"{name} must be {kind}, got {text!r}") from None
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        expected = "a finite number" if convert is float else kind
        raise CvaeError(f"{name} must be {expected}{bound}, got {text!r}")
    return value


def _png(image):
    from PIL import Image

    from cvae.figures import to_uint8

    array = to_uint8(image)
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def listening_socket(host, port):
    """A socket listening on host:port, or a one-line CvaeError saying why not."""
    import socket

    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise CvaeError(f"unknown host {host!r} (give an address such as 127.0.0.1 or a "
                        f"name this machine resolves)") from None
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(BACKLOG)
    except OSError as error:
        listener.close()
        raise CvaeError(f"cannot listen on {host}:{port}: "
                        f"{error.strerror or error}") from None
    return listener


def serve(codec, mixture, listener, scorer=None):
    """Serve the demo on an already listening socket until Ctrl-C."""
    try:
        import uvicorn
    except ImportError:
        raise CvaeError("the web demo needs its extra: pip install -e '.[demo]'") from None
    app = create_app(codec, mixture, scorer)
    config = uvicorn.Config(app, log_level="warning", limit_concurrency=MAX_CONNECTIONS,
                            timeout_keep_alive=5)
    host, port = listener.getsockname()[:2]
    print(f"cvae demo on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    uvicorn.Server(config).run(sockets=[listener])
