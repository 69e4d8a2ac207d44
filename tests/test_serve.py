"""The web demo: its JSON API in-process, and the page in a real headless Chromium.

The browser test also makes the README's screenshot:
    CVAE_DEMO_MODEL=saved_models/cvae-faces.keras CVAE_DEMO_FACE=data/astronaut_face.png \\
    CVAE_DEMO_SCREENSHOT=docs/results/demo.png python -m pytest tests/test_serve.py -k browser
"""

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvae import serve
from cvae.codec import Codec, CodecTable, weights_sha256
from cvae.model.vae import VAE
from tests.helpers import TINY, smooth_images, tiny_model_file

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _png_bytes(size=40, seed=0):
    buffer = io.BytesIO()
    Image.fromarray(smooth_images(1, size=size, seed=seed)[0]).save(buffer, "PNG")
    return buffer.getvalue()


def _decoded(data_url):
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


@pytest.fixture(scope="module")
def client():
    from starlette.testclient import TestClient

    model = VAE(TINY, seed=0)
    table = CodecTable((0.05, 0.1, 0.05, 0.2), (True, True, False, True), 1.0,
                       weights_sha256(model))
    return TestClient(serve.create_app(Codec(model, table)))


def test_the_page_is_served_with_no_outside_assets(client):
    page = client.get("/").text
    assert "Compress a face" in page and "http://" not in page and "https://" not in page


def test_compress_then_decompress_through_the_api(client):
    result = client.post("/api/compress", files={"image": ("face.png", _png_bytes())}).json()
    assert _decoded(result["original"]).shape == (16, 16, 3)
    assert _decoded(result["decompressed"]).shape == (16, 16, 3)
    content = base64.b64decode(result["cvae"])
    assert result["bytes"] == len(content) and result["mode"] == "entropy"
    assert result["ratio"] == pytest.approx(16 * 16 * 3 / len(content))
    assert np.isfinite(result["psnr"])
    again = client.post("/api/decompress", files={"file": ("face.cvae", content)}).json()
    assert again["decompressed"] == result["decompressed"]


def test_the_demo_can_refine_codes_before_compressing(first_stage):
    """`cvae serve --refine-steps`: the page's PSNR is that of refined codes."""
    from starlette.testclient import TestClient

    model, images = first_stage
    buffer = io.BytesIO()
    Image.fromarray(images[0]).save(buffer, "PNG")
    results = {}
    for steps in (0, 20):
        client = TestClient(serve.create_app(Codec(model, refine_steps=steps)))
        results[steps] = client.post("/api/compress",
                                     files={"image": ("face.png", buffer.getvalue())}).json()
        assert results[steps]["refine_steps"] == steps
    assert results[20]["psnr"] > results[0]["psnr"]


@pytest.mark.parametrize("route, files, message", [
    ("/api/compress", {"image": ("notes.txt", b"not an image")}, "not an image"),
    ("/api/compress", {"image": ("empty.png", b"")}, "empty file"),
    ("/api/compress", {}, "no file was uploaded"),
    ("/api/decompress", {"file": ("bad.cvae", b"CVAE\x02" + bytes(30))}, "CRC-32"),
    ("/api/decompress", {"file": ("face.png", _png_bytes())}, "wrong magic"),
    ("/api/decompress", {"file": ("bad.cvae", b"CVAE\x01" + bytes(30))}, "bad.cvae: format version 1"),
    ("/api/decompress", {"file": ("face.png", _png_bytes())}, "face.png: "),
    ("/api/compress", {"image": ("notes.txt", b"not an image")}, "notes.txt: not an image"),
])
def test_bad_uploads_are_clear_errors_and_the_server_goes_on(client, route, files, message):
    response = client.post(route, files=files)
    assert response.status_code == 400 and message in response.json()["error"]
    assert client.get("/api/generate", params={"count": 2}).status_code == 200


def test_too_large_uploads_are_refused(client, monkeypatch):
    monkeypatch.setattr(serve, "MAX_UPLOAD_BYTES", 100)
    response = client.post("/api/compress", files={"image": ("big.png", _png_bytes(64))})
    assert response.status_code == 400 and "too large" in response.json()["error"]


def test_the_mixture_sampler_is_offered_only_when_there_is_one(client):
    assert client.get("/api/samplers").json() == {"samplers": ["prior"]}
    response = client.get("/api/generate", params={"sampler": "gmm"})
    assert response.status_code == 400 and "no ex-post mixture" in response.json()["error"]


@pytest.mark.parametrize("params, message", [
    ({"temperature": "nan"}, "temperature must be a finite number >= 0, got 'nan'"),
    ({"temperature": "inf"}, "temperature must be a finite number >= 0, got 'inf'"),
    ({"temperature": "-1"}, "temperature must be a finite number >= 0, got '-1'"),
    ({"seed": "-3"}, "seed must be an integer >= 0, got '-3'"),
    ({"seed": "x"}, "seed must be an integer, got 'x'"),
])
def test_generate_parameters_are_checked_and_named(client, params, message):
    response = client.get("/api/generate", params=params)
    assert response.status_code == 400 and response.json()["error"] == message


def test_generate_and_interpolate(client):
    grid = _decoded(client.get("/api/generate", params={"seed": 3, "temperature": 0.5,
                                                        "count": 4}).json()["grid"])
    assert grid.shape == (16, 4 * 16 + 3 * 2, 3)
    assert client.get("/api/generate", params={"count": 999}).status_code == 400
    assert client.get("/api/generate", params={"seed": "x"}).status_code == 400
    strip = client.post("/api/interpolate", data={"steps": "5"},
                        files={"first": ("a.png", _png_bytes(seed=1)),
                               "second": ("b.png", _png_bytes(seed=2))}).json()["strip"]
    assert _decoded(strip).shape == (16, 5 * 16 + 4 * 2, 3)


def _free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _wait_for(port, process, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server stopped: {process.stdout.read()}")
        with socket.socket() as handle:
            if handle.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail("the server did not start in time")


@pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                    reason="Debian's chromium and chromium-driver are not installed "
                           "(apt-get install chromium chromium-driver; .ci/run does)")
@pytest.mark.slow  # A browser and a server process.
def test_the_page_in_a_real_browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model_path = os.environ.get("CVAE_DEMO_MODEL")
    if model_path is None:
        model_path = tiny_model_file(tmp_path)
    face = Path(os.environ.get("CVAE_DEMO_FACE", tmp_path / "face.png"))
    if not face.exists():
        face.write_bytes(_png_bytes(64))
    corrupt = tmp_path / "corrupt.cvae"
    corrupt.write_bytes(b"CVAE\x02\x02" + bytes(40))
    screenshot = Path(os.environ.get("CVAE_DEMO_SCREENSHOT", tmp_path / "demo.png"))

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cvae.cli", "serve", "--model",
                               str(model_path), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1000,1300"):
        options.add_argument(argument)
    browser = None
    try:
        _wait_for(port, server)
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        wait = WebDriverWait(browser, 60)
        browser.get(f"http://127.0.0.1:{port}/")
        # Nothing on the page is broken before the first action: every image
        # shown has loaded (empty result images stay hidden).
        broken = browser.execute_script(
            "return Array.from(document.images).filter(i => i.offsetParent !== null"
            " && !(i.complete && i.naturalWidth > 0)).map(i => i.id);")
        assert broken == []

        browser.find_element(By.ID, "compress-input").send_keys(str(face.resolve()))
        browser.find_element(By.ID, "compress-button").click()
        wait.until(lambda b: "bytes" in b.find_element(By.ID, "compress-stats").text)
        stats = browser.find_element(By.ID, "compress-stats").text
        assert "PSNR" in stats and ":1" in stats
        decompressed = browser.find_element(By.ID, "decompressed-image").get_attribute("src")
        assert decompressed.startswith("data:image/png;base64,")
        assert browser.find_element(By.ID, "download-link").is_displayed()

        browser.find_element(By.ID, "decompress-input").send_keys(str(corrupt))
        browser.find_element(By.ID, "decompress-button").click()
        wait.until(lambda b: "CRC" in b.find_element(By.ID, "decompress-error").text)

        browser.find_element(By.ID, "generate-button").click()
        wait.until(lambda b: b.find_element(By.ID, "generate-image").get_attribute("src"))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(screenshot))
        assert server.poll() is None  # The bad upload did not take it down.
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)


def test_start_up_failures_are_one_line_before_any_banner(tmp_path, capsys):
    from cvae.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--model", str(tmp_path / "none.keras")]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""  # No banner.
        assert captured.err.strip() == (f"cvae: error: cannot listen on 127.0.0.1:{port}: "
                                        f"Address already in use")
    assert main(["serve", "--host", "no-such-host.invalid", "--port", str(_free_port())]) == 1
    assert capsys.readouterr().err.strip().startswith(
        "cvae: error: unknown host 'no-such-host.invalid'")
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "99999"])
    assert exit_info.value.code == 2
    assert "expected a port number from 1 to 65535, got '99999'" in capsys.readouterr().err


def _resident_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc for memory")
@pytest.mark.slow  # A server process and 160 requests.
def test_the_server_holds_up_under_concurrent_clients(tmp_path):
    """Bounded in count (160 requests, 16 at a time) and time (each 30 s at most)."""
    import concurrent.futures

    import httpx2 as httpx

    model_path = tiny_model_file(tmp_path)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    port = _free_port()
    environment = {**os.environ, "HOME": str(tmp_path / "home"),
                   "CVAE_CACHE": str(tmp_path / "cache")}
    server = subprocess.Popen([sys.executable, "-m", "cvae.cli", "serve", "--model",
                               str(model_path), "--port", str(port)], cwd=workdir,
                              env=environment, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    image = _png_bytes(48)

    def request(index):
        with httpx.Client(timeout=30) as http:
            if index % 2:
                return http.get(f"{url}/api/generate", params={"seed": index, "count": 4})
            return http.post(f"{url}/api/compress", files={"image": ("face.png", image)})

    def burst(count):
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            return [response.status_code for response in pool.map(request, range(count))]

    try:
        _wait_for(port, server)
        assert set(burst(32)) <= {200, 503}
        warm = _resident_kib(server.pid)
        statuses = burst(128)
        assert statuses.count(200) >= 64 and set(statuses) <= {200, 503}
        # Memory stays bounded: more requests do not keep growing it.
        assert _resident_kib(server.pid) < 1.5 * warm + 50_000
        with httpx.Client(timeout=30) as http:  # Still answering.
            assert http.get(f"{url}/api/samplers").status_code == 200
            too_large = http.post(f"{url}/api/compress",
                                  files={"image": ("big.png", bytes(serve.MAX_UPLOAD_BYTES + 1))})
            assert too_large.status_code == 400 and "too large" in too_large.json()["error"]
        assert server.poll() is None
        assert list(workdir.iterdir()) == []  # Nothing written where it runs.
    finally:
        server.terminate()
        server.wait(timeout=30)
