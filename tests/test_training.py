"""Training runs through `cvae train`: the run directory, resume, time limits,
fine-tuning, finished runs and export."""

import csv
import json

import keras
import numpy as np
import pytest

from cvae.cli import main
from cvae.model.saving import load_model
from cvae.training import trainer
from cvae.training.runs import TrainOptions
from tests.helpers import write_image_folder

TINY_RUN = ["--preset", "seed", "--image-size", "16", "--latent-dim", "4", "--batch-size", "8",
            "--seed", "0"]


def _epochs_logged(run):
    with open(run / "history.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _interrupt_in_second_epoch(monkeypatch):
    """Ctrl-C at the end of epoch 2, after its metrics are logged, before its backup."""
    real_end_of_epoch = trainer.TrainingFigures.on_epoch_end

    def crash_in_second_epoch(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt
        real_end_of_epoch(self, epoch, logs)

    monkeypatch.setattr(trainer.TrainingFigures, "on_epoch_end", crash_in_second_epoch)


@pytest.mark.backends
def test_train_writes_the_run_directory(tmp_path):
    folder = write_image_folder(tmp_path / "faces", n=40)
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--epochs", "1", "--out", str(run),
                 "--validation-split", "0.25", *TINY_RUN]) == 0
    for name in ("model.keras", "run.json", "history.csv", "loss_curves.png",
                 "images/epoch_001_reconstructions.png", "images/epoch_001_samples.png"):
        assert (run / name).is_file(), name
    assert any((run / "logs").rglob("events.out.tfevents*"))
    assert not (run / "backup").exists()  # Removed once training finished.
    assert load_model(run / "model.keras").config.image_size == 16
    assert json.loads((run / "run.json").read_text())["config"]["latent_dim"] == 4

    published = tmp_path / "published" / "tiny.keras"
    assert main(["export", str(run), "-o", str(published)]) == 0
    assert published.stat().st_size < 0.6 * (run / "model.keras").stat().st_size  # No Adam moments.
    np.testing.assert_array_equal(load_model(published).get_weights()[0],
                                  load_model(run / "model.keras").get_weights()[0])
    record = json.loads(published.with_suffix(".json").read_text())
    assert record["epochs_run"] == 1 and "wall_time_s" in record["history"][0]
    assert record["config"]["latent_dim"] == 4
    assert main(["export", str(tmp_path), "-o", str(published)]) == 1  # Not a run directory.


@pytest.mark.backends
def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    folder = write_image_folder(tmp_path / "faces", n=24)
    run = tmp_path / "run"
    command = ["train", "--data", str(folder), "--epochs", "3", "--out", str(run),
               "--no-tensorboard", *TINY_RUN]
    _interrupt_in_second_epoch(monkeypatch)
    assert main(command) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "cvae: interrupted; rerun the same command to resume from the last finished epoch")
    assert (run / "backup").is_dir()
    monkeypatch.undo()
    assert main(command) == 0
    # Epoch 1 (index 0) was backed up and not redone; the interrupted one was
    # logged, then redone (a restart from scratch would log 0, 1, 0, 1, 2).
    assert _epochs_logged(run) == [0, 1, 1, 2]
    assert (run / "images/epoch_003_samples.png").is_file()
    assert not (run / "backup").exists()


@pytest.mark.backends
def test_a_nan_stops_training_and_keeps_the_last_good_state(tmp_path, monkeypatch, capsys):
    folder = write_image_folder(tmp_path / "faces", n=24)
    run = tmp_path / "run"
    command = ["train", "--data", str(folder), "--epochs", "3", "--out", str(run),
               "--no-tensorboard", *TINY_RUN]

    def poison_the_second_epoch(self, epoch, logs=None):
        if epoch == 1:
            self.model.decoder.layers[1].kernel.assign(
                np.full(self.model.decoder.layers[1].kernel.shape, np.nan))

    monkeypatch.setattr(trainer.TrainingFigures, "on_epoch_begin", poison_the_second_epoch,
                        raising=False)
    assert main(command) == 1
    assert "loss became NaN" in capsys.readouterr().err
    best = load_model(run / "model.keras")
    assert all(np.all(np.isfinite(w)) for w in best.get_weights())
    assert json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    monkeypatch.undo()
    assert main(command) == 0  # Resumes from the last good epoch and finishes.
    assert _epochs_logged(run)[-2:] == [1, 2]


def test_a_run_without_validation_data_monitors_the_training_loss(tmp_path):
    folder = write_image_folder(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--epochs", "2", "--out", str(run),
                 "--validation-split", "0", "--no-tensorboard", *TINY_RUN]) == 0
    assert json.loads((run / "model.best.json").read_text())["monitor"] == "loss"
    assert (run / "loss_curves.png").is_file()
    assert main(["export", str(run), "-o", str(tmp_path / "m.keras")]) == 0


def test_overwrite_starts_afresh_whatever_the_old_run_left(tmp_path):
    folder = write_image_folder(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    command = ["train", "--data", str(folder), "--epochs", "1", "--out", str(run),
               "--no-tensorboard", *TINY_RUN]
    assert main(command) == 0
    (run / "model.best.json").write_text(json.dumps({"value": -1e30}))  # Unbeatable.
    before = (run / "model.keras").stat().st_mtime_ns
    assert main(command + ["--overwrite"]) == 0
    assert (run / "model.keras").stat().st_mtime_ns != before
    assert _epochs_logged(run) == [0]


def test_a_time_limit_stops_cleanly_and_counts_across_resumes(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "faces", n=24)
    run = tmp_path / "run"
    command = ["train", "--data", str(folder), "--epochs", "4", "--out", str(run),
               "--no-tensorboard", "--lr-schedule", "cosine", *TINY_RUN]
    _interrupt_in_second_epoch(monkeypatch)
    assert main(command) == 130
    monkeypatch.undo()
    with open(run / "history.csv", newline="") as handle:
        first_session = float(list(csv.DictReader(handle))[0]["wall_time_s"])
    # A limit already spent by the first session: one (cut-short) epoch, then stop.
    limit_minutes = first_session / 60
    assert main(command + ["--time-limit", f"{limit_minutes:.6f}"]) == 0
    with open(run / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 1]
    assert float(rows[-1]["wall_time_s"]) > first_session  # Carried over, not restarted.
    assert not (run / "backup").exists()


@pytest.mark.backends
def test_fine_tuning_starts_from_the_initial_model(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "faces", n=16)
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    common = ["--data", str(folder), "--epochs", "1", "--no-tensorboard", "--batch-size", "8"]
    assert main(["train", *common, "--out", str(first), *TINY_RUN, "--kl-warmup-steps", "50"]) == 0
    initial = load_model(first / "model.keras")
    # A vanishing learning rate leaves the starting weights in place; a fresh
    # start from another seed would not.
    assert main(["train", *common, "--out", str(tuned), "--initial-model",
                 str(first / "model.keras"), "--learning-rate", "1e-12", "--seed", "1"]) == 0
    result = load_model(tuned / "model.keras")
    assert result.config == initial.config.replace(kl_warmup_steps=0)
    for start, end in zip(initial.first_stage_weights(), result.first_stage_weights()):
        np.testing.assert_allclose(end, start, atol=1e-6)
    assert json.loads((tuned / "run.json").read_text())["options"]["initial_model"] == \
        str(first / "model.keras")
    # Started from a run directory's model, the published record has that run's too.
    assert main(["export", str(tuned), "-o", str(tmp_path / "tuned.keras")]) == 0
    record = json.loads((tmp_path / "tuned.json").read_text())
    assert record["initial"]["config"]["kl_warmup_steps"] == 50
    assert record["initial"]["epochs_run"] == 1 and record["epochs_run"] == 1

    # Published in place of its starting model, the record keeps both trainings.
    published = tmp_path / "published.keras"
    assert main(["export", str(first), "-o", str(published)]) == 0
    assert main(["train", *common, "--out", str(tmp_path / "again"), "--initial-model",
                 str(published), "--warmup-steps", "1"]) == 0
    assert main(["export", str(tmp_path / "again"), "-o", str(published), "--force"]) == 0
    record = json.loads(published.with_suffix(".json").read_text())
    assert record["options"]["initial_model"] == str(published)
    assert record["initial"]["config"]["kl_warmup_steps"] == 50
    assert record["initial"]["epochs_run"] == 1 and record["epochs_run"] == 1
    assert record["options"]["warmup_steps"] == 1

    assert main(["train", *common, "--out", str(tuned), "--initial-model",
                 str(first / "model.keras"), "--latent-dim", "8"]) == 1
    assert capsys.readouterr().err.strip() == ("cvae: error: a fine-tuned model keeps its "
                                               "initial model's network; drop the overrides "
                                               "['latent_dim']")
    assert main(["train", *common, "--out", str(tuned), "--initial-model",
                 str(tmp_path / "missing.keras")]) == 1


@pytest.mark.backends
def test_fine_tuning_may_add_the_adversarial_term(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "faces", n=16)
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    common = ["--data", str(folder), "--epochs", "1", "--no-tensorboard", "--batch-size", "8"]
    assert main(["train", *common, "--out", str(first), *TINY_RUN]) == 0
    if keras.backend.backend() != "tensorflow":
        # Its step drives two optimizers, written for TensorFlow alone so far.
        assert main(["train", *common, "--out", str(tuned), "--initial-model",
                     str(first / "model.keras"), "--adversarial-weight", "0.5"]) == 1
        assert "TensorFlow backend only" in capsys.readouterr().err
        return
    assert main(["train", *common, "--out", str(tuned), "--initial-model",
                 str(first / "model.keras"), "--learning-rate", "1e-12",
                 "--adversarial-weight", "0.5", "--adversarial-start-step", "100",
                 "--discriminator-scales", "2"]) == 0
    initial, result = load_model(first / "model.keras"), load_model(tuned / "model.keras")
    assert result.config == initial.config.replace(kl_warmup_steps=0, adversarial_weight=0.5,
                                                   adversarial_start_step=100,
                                                   discriminator_scales=2)
    assert initial.discriminator is None and result.discriminator is not None
    for start, end in zip(initial.decoder.get_weights(), result.decoder.get_weights()):
        np.testing.assert_allclose(end, start, atol=1e-6)


def test_resuming_with_another_configuration_is_refused(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "faces", n=8)
    run = tmp_path / "run"
    (run / "backup").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"latent_dim": 99}}))
    assert main(["train", "--data", str(folder), "--out", str(run), *TINY_RUN]) == 1
    assert "another configuration" in capsys.readouterr().err


def test_a_finished_run_is_never_replaced_and_more_epochs_train_on(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "faces", n=24)
    run = tmp_path / "run"
    command = ["train", "--data", str(folder), "--out", str(run), "--no-tensorboard", *TINY_RUN]
    assert main([*command, "--epochs", "1"]) == 0
    assert (run / "final").is_dir() and not (run / "backup").exists()
    before = (run / "model.keras").stat().st_mtime_ns
    capsys.readouterr()

    assert main([*command, "--epochs", "1"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (f"cvae: error: {run} holds a finished run of 1 epoch(s); rerun with "
                     f"--epochs above 1 to train on from it, or --overwrite to start again")
    assert (run / "model.keras").stat().st_mtime_ns == before
    assert _epochs_logged(run) == [0]
    # A mistyped --data is named first, not the finished run.
    assert main(["train", "--data", str(tmp_path / "typo"), "--out", str(run), *TINY_RUN,
                 "--epochs", "1"]) == 1
    assert capsys.readouterr().err.strip() == (f"cvae: error: --data {tmp_path / 'typo'}: "
                                               f"no such file or directory")

    assert main([*command, "--epochs", "3"]) == 0  # Trains on from epoch 1.
    assert _epochs_logged(run) == [0, 1, 2]
    assert json.loads((run / "final" / "training_metadata.json").read_text())["epoch"] == 3

    assert main([*command, "--epochs", "1", "--overwrite"]) == 0  # Starts again.
    assert _epochs_logged(run) == [0]
    assert not (run / "images" / "epoch_003_samples.png").exists()


def test_a_finished_cosine_run_is_fine_tuned_not_trained_on(tmp_path, capsys):
    # Training on would carry the optimizer's step count into a longer cosine,
    # jumping the rate from near zero back to mid-curve.
    folder = write_image_folder(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    command = ["train", "--data", str(folder), "--out", str(run), "--no-tensorboard", *TINY_RUN]
    assert main([*command, "--epochs", "1", "--lr-schedule", "cosine"]) == 0
    capsys.readouterr()
    for schedule in ("cosine", "constant"):
        assert main([*command, "--epochs", "2", "--lr-schedule", schedule]) == 1
        error = capsys.readouterr().err.strip()
        assert error == (f"cvae: error: {run} holds a finished run whose cosine learning rate "
                         f"has decayed to zero; fine-tune it instead: --initial-model "
                         f"{run / 'model.keras'} --warmup-steps 500 --out ANOTHER_FOLDER")
    assert _epochs_logged(run) == [0]


@pytest.mark.parametrize("schedule, final_rate", [("cosine", 0.0), ("constant", 1e-3)])
def test_the_warm_up_rises_from_zero_to_the_learning_rate(schedule, final_rate):
    options = TrainOptions(data=None, epochs=2, learning_rate=1e-3,
                           learning_rate_schedule=schedule, warmup_steps=10)
    rate = trainer._learning_rate(options, steps_per_epoch=50)
    assert float(rate(0)) == 0.0
    assert float(rate(5)) == pytest.approx(5e-4)
    assert float(rate(10)) == pytest.approx(1e-3)
    assert float(rate(100)) == pytest.approx(final_rate, abs=1e-9)


def test_without_a_warm_up_the_schedules_are_unchanged():
    options = TrainOptions(data=None, epochs=2, learning_rate=1e-3, warmup_steps=0)
    assert trainer._learning_rate(options, steps_per_epoch=50) == 1e-3
    cosine = trainer._learning_rate(
        TrainOptions(data=None, epochs=2, learning_rate=1e-3, warmup_steps=0,
                     learning_rate_schedule="cosine"), steps_per_epoch=50)
    assert float(cosine(0)) == pytest.approx(1e-3)
    assert float(cosine(50)) == pytest.approx(5e-4)


def test_a_run_directory_without_a_final_state_is_refused(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"a model from elsewhere")
    assert main(["train", "--data", str(folder), "--out", str(run), "--epochs", "1",
                 *TINY_RUN]) == 1
    assert "cannot be trained on" in capsys.readouterr().err
    assert (run / "model.keras").read_bytes() == b"a model from elsewhere"


def test_export_refuses_to_replace_without_force(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--out", str(run), "--epochs", "1",
                 "--no-tensorboard", *TINY_RUN]) == 0
    published = tmp_path / "model.keras"
    published.write_bytes(b"keep me")
    capsys.readouterr()
    assert main(["export", str(run), "-o", str(published)]) == 1
    assert capsys.readouterr().err.strip() == (f"cvae: error: {published} exists "
                                               f"(use --force to overwrite)")
    assert published.read_bytes() == b"keep me"
    assert main(["export", str(run), "-o", str(published), "--force"]) == 0
    assert load_model(published).config.latent_dim == 4


def test_export_publishes_the_best_or_the_last_state(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "faces", n=16)
    run = tmp_path / "run"
    options = TrainOptions(data=str(folder), out=str(run), preset="seed", epochs=2,
                           batch_size=8, seed=0, tensorboard=False, verbose=0,
                           config_overrides={"image_size": 16, "latent_dim": 4})
    trained, _ = trainer.train(options)
    # Stand in a best checkpoint that is not the last state.
    from cvae.model.saving import save_model
    from cvae.model.vae import VAE

    save_model(VAE(trained.config, seed=5), run / "model.keras")
    best, last = tmp_path / "best.keras", tmp_path / "last.keras"
    assert main(["export", str(run), "-o", str(best), "--no-litert"]) == 0
    assert main(["export", str(run), "-o", str(last), "--checkpoint", "last", "--no-litert"]) == 0
    for exported, expected in ((best, load_model(run / "model.keras")), (last, trained)):
        for mine, theirs in zip(load_model(exported).get_weights(), expected.get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    assert json.loads(last.with_suffix(".json").read_text())["exported"] == {
        "checkpoint": "last", "epoch": 2}
    # A run directory without a last state says so in one line.
    (run / "final").rename(tmp_path / "elsewhere")
    capsys.readouterr()
    assert main(["export", str(run), "-o", str(tmp_path / "x.keras"), "--checkpoint", "last"]) == 1
    assert "has no last state to export" in capsys.readouterr().err


@pytest.mark.parametrize("split", ["1.0", "1.5", "-0.5"])
def test_the_validation_split_is_a_fraction(tmp_path, capsys, split):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path), "--validation-split", split])
    assert exit_info.value.code == 2
    assert f"expected a fraction from 0 to below 1, got '{split}'" in capsys.readouterr().err


def test_train_on_several_sources_together(tmp_path, capsys):
    first = write_image_folder(tmp_path / "first", n=12)
    second = write_image_folder(tmp_path / "second", n=8, seed=1)
    assert main(["train", "--data", str(first), "--data", str(second), "--val-data",
                 str(first), "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--no-tensorboard", *TINY_RUN]) == 0
    assert "training on 20 images, validating on 12" in capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["options"]["data"] == [str(first), str(second)]


def test_a_one_epoch_history_plots_visible_points(tmp_path, monkeypatch):
    from cvae.training import runs

    history = tmp_path / "history.csv"
    history.write_text("epoch,kl_loss,loss,reconstruction_loss\n0,1.0,2.0,1.0\n")
    drawn = {}
    monkeypatch.setattr(runs, "save_figure", lambda figure, path: drawn.update(figure=figure))
    runs.plot_history(history, tmp_path / "curves.png")
    lines = [line for axis in drawn["figure"].axes for line in axis.get_lines()]
    assert lines and all(line.get_marker() not in (None, "None", "") for line in lines)


@pytest.mark.backends
def test_cvae_pack_makes_one_file_that_trains_on_the_same_split(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "faces", n=40)
    pack = tmp_path / "faces.npz"
    assert main(["pack", str(folder), "-o", str(pack), "--image-size", "16"]) == 0
    assert "wrote" in capsys.readouterr().out and pack.is_file()
    assert main(["pack", str(folder), "-o", str(pack)]) == 1  # Never replaced unasked.
    assert "use --force" in capsys.readouterr().err
    assert main(["pack", str(folder), "-o", str(tmp_path / "faces.npy")]) == 1
    for source, run in ((folder, "from_folder"), (pack, "from_pack")):
        assert main(["train", "--data", str(source), "--epochs", "1", "--no-tensorboard",
                     "--validation-split", "0.25", "--out", str(tmp_path / run),
                     *TINY_RUN]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("training on")]
    assert len(lines) == 2 and lines[0] == lines[1]
