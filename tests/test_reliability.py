"""Crash safety and hostile input: kill -9 and resume, messy folders, fuzzed files,
models that must not load."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from cvae.cli import main
from cvae.data import datasets, image_files
from cvae.errors import CvaeError
from cvae.model.saving import load_model, save_model
from cvae.model.vae import VAE
from tests.helpers import TINY, smooth_images

TINY_RUN = ["--preset", "seed", "--image-size", "16", "--latent-dim", "4", "--seed", "0",
            "--no-tensorboard"]


def _epochs_logged(run):
    with open(run / "history.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow  # Training processes, one killed.
def test_kill_9_mid_training_then_the_same_command_resumes(tmp_path):
    images = tmp_path / "faces.npy"
    np.save(images, smooth_images(512))
    run = tmp_path / "run"
    command = [sys.executable, "-m", "cvae.cli", "train", "--data", str(images), "--epochs", "6",
               "--batch-size", "4", "--out", str(run), *TINY_RUN]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=environment)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if (run / "history.csv").is_file() and len(_epochs_logged(run)) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("training did not get through two epochs in time")
        time.sleep(0.3)  # Into the third epoch.
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert (run / "backup").is_dir()
    assert load_model(run / "model.keras").config.latent_dim == 4  # Never half-written.
    done_before = len(_epochs_logged(run))

    # What a kill during a save leaves behind; the rerun clears it away.
    (run / ".tmp-99999-model.keras").write_bytes(b"half a model")
    (run / "backup" / ".tmp-99999-latest.weights.h5").write_bytes(b"half the weights")
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    assert not list(run.rglob(".tmp-*"))
    epochs = _epochs_logged(run)
    assert epochs[-1] == 5 and not (run / "backup").exists()
    # The rerun went on from the last backup: no epoch before it was redone.
    resumed_from = epochs[done_before]
    assert resumed_from >= done_before - 1 and epochs[:done_before] == list(range(done_before))
    load_model(run / "model.keras")


def _messy_folder(root, good=1500):
    root.mkdir()
    faces = smooth_images(good, size=16)
    for index, face in enumerate(faces):
        folder = root / f"part{index % 5}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(face).save(folder / f"face{index:04d}.png")
    rng = np.random.default_rng(0)
    for index in range(40):
        (root / f"corrupt{index}.jpg").write_bytes(rng.bytes(int(rng.integers(1, 400))))
    png = io.BytesIO()
    Image.fromarray(faces[0]).save(png, "PNG")
    (root / "truncated.png").write_bytes(png.getvalue()[:60])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    (root / "linked.png").symlink_to(root / "part0" / "face0000.png")
    (root / "part1" / "loop").symlink_to(root, target_is_directory=True)
    os.mkfifo(root / "pipe.png")
    return root


def test_a_messy_folder_trains_and_reports_what_it_skipped(tmp_path, capsys):
    folder = _messy_folder(tmp_path / "messy")
    started = time.monotonic()
    with pytest.warns(image_files.SkippedFilesWarning) as warned:
        images, _ = datasets.read_dataset(folder, 16)
    assert time.monotonic() - started < 60  # The pipe and the link loop do not hang it.
    assert len(images) == 1501  # 1,500 faces and the good link, each once.
    message = str(warned[0].message)
    assert "skipped 44 unusable file(s)" in message  # 40 corrupt, truncated, empty, dangling, pipe.
    assert main(["train", "--data", str(folder), "--epochs", "1", "--batch-size", "64",
                 "--out", str(tmp_path / "run"), *TINY_RUN]) == 0
    assert "skipped 44 unusable file(s)" in capsys.readouterr().err


def test_fuzzed_image_files_only_ever_fail_cleanly(tmp_path):
    rng = np.random.default_rng(1)
    seeds = []
    for image_format in ("PNG", "JPEG", "GIF", "BMP", "WEBP"):
        buffer = io.BytesIO()
        Image.fromarray(smooth_images(1, size=24)[0]).save(buffer, image_format)
        seeds.append(buffer.getvalue())
    paths = []
    for index in range(300):
        seed = bytearray(seeds[index % len(seeds)])
        kind = index % 3
        if kind == 0:
            content = bytes(seed[:int(rng.integers(0, len(seed)))])  # Truncated.
        elif kind == 1:
            for position in rng.integers(0, len(seed), size=int(rng.integers(1, 20))):
                seed[position] = int(rng.integers(0, 256))  # Bytes flipped.
            content = bytes(seed)
        else:
            content = rng.bytes(int(rng.integers(0, 2000)))
        path = tmp_path / f"fuzz{index}.{['png', 'jpg', 'gif', 'bmp', 'webp'][index % 5]}"
        path.write_bytes(content)
        paths.append(path)
    started = time.monotonic()
    images, skipped = image_files.load_images(paths, 16, warn=False)
    assert time.monotonic() - started < 60
    assert len(images) + len(skipped) == len(paths)
    assert all(isinstance(reason, str) and reason for _, reason in skipped)


def test_a_model_file_naming_an_unknown_class_is_refused(tmp_path):
    good = tmp_path / "good.keras"
    save_model(VAE(TINY, seed=0), good)
    bad = tmp_path / "unknown.keras"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(bad, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(content)
                config["class_name"] = "Backdoor"
                config["module"] = "evil.payload"
                config["registered_name"] = "evil>Backdoor"
                content = json.dumps(config).encode()
            target.writestr(item, content)
    with pytest.raises(CvaeError, match="cannot load model"):
        load_model(bad)
