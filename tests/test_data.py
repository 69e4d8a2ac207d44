import numpy as np
import pytest
from PIL import Image

from cvae.data import datasets, image_files
from cvae.errors import CvaeError
from tests.helpers import smooth_images, write_image_folder


def test_nested_non_square_folder_is_read_cropped_and_resized(tmp_path):
    write_image_folder(tmp_path, n=9, size=(24, 20))
    assert len(image_files.list_image_files(tmp_path)) == 9
    train, validation = datasets.read_dataset(tmp_path, image_size=16)
    assert train.shape == (9, 16, 16, 3) and train.dtype == np.uint8
    assert len(validation) == 0


def test_every_colour_mode_becomes_rgb(tmp_path):
    rgb = smooth_images(1, size=20)[0]
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.gif")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).save(tmp_path / "plain.bmp")
    Image.fromarray(rgb).save(tmp_path / "web.webp")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 256)).save(tmp_path / "deep.png")
    images, skipped = image_files.load_images(image_files.list_image_files(tmp_path), 16)
    assert images.shape == (7, 16, 16, 3) and not skipped
    gray, _ = image_files.load_images([tmp_path / "rgba.png"], 16, channels=1)
    assert gray.shape == (1, 16, 16, 1)


def test_transparency_is_composited_on_white(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert image_files.load_image(tmp_path / "clear.png", 8).min() == 255


def test_corrupt_and_empty_files_are_skipped_with_one_warning(tmp_path):
    write_image_folder(tmp_path, n=4)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    whole = (tmp_path / "face_001.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(image_files.SkippedFilesWarning, match=r"skipped 3 unusable file\(s\)") as caught:
        # Split so that bad files fall on both sides: still one warning.
        train, validation = datasets.read_dataset(tmp_path, image_size=16, validation_fraction=0.5)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "empty.jpg" in message and "corrupt.png" in message and "truncated.png" in message
    assert len(train) + len(validation) == 4


def test_the_warning_names_only_the_first_few(tmp_path):
    for index in range(8):
        (tmp_path / f"bad{index}.jpg").write_bytes(b"x")
    with pytest.warns(image_files.SkippedFilesWarning, match="and 3 more"):
        images, skipped = image_files.load_images(image_files.list_image_files(tmp_path), 16)
    assert len(images) == 0 and len(skipped) == 8


def test_missing_empty_and_unreadable_folders_are_clear_errors(tmp_path):
    with pytest.raises(CvaeError, match="no such file or directory"):
        datasets.read_dataset(tmp_path / "missing", 16)
    with pytest.raises(CvaeError, match="no images"):
        datasets.read_dataset(tmp_path, 16)
    (tmp_path / "bad.jpg").write_bytes(b"")
    with pytest.warns(image_files.SkippedFilesWarning), pytest.raises(CvaeError, match="no readable images"):
        datasets.read_dataset(tmp_path, 16)


def test_crop_box(tmp_path):
    picture = np.zeros((30, 40, 3), np.uint8)
    picture[10:20, 5:15] = 200
    Image.fromarray(picture).save(tmp_path / "a.png")
    cropped = image_files.load_image(tmp_path / "a.png", 10, framing=(5, 10, 10, 10))
    assert cropped.min() == 200
    with pytest.raises(ValueError, match="does not fit"):
        image_files.load_image(tmp_path / "a.png", 10, framing=(35, 0, 10, 10))
    # In a folder, such an image is skipped and the warning says why.
    with pytest.warns(image_files.SkippedFilesWarning, match=r"a.png \(crop box .* does not fit"):
        images, skipped = image_files.load_images([tmp_path / "a.png"], 10, framing=(35, 0, 10, 10))
    assert len(images) == 0 and len(skipped) == 1


def test_the_split_is_deterministic_and_disjoint(tmp_path):
    write_image_folder(tmp_path, n=40)
    first = datasets.read_dataset(tmp_path, 16, validation_fraction=0.3)
    second = datasets.read_dataset(tmp_path, 16, validation_fraction=0.3)
    assert len(first[0]) + len(first[1]) == 40 and 0 < len(first[1]) < 40
    np.testing.assert_array_equal(first[1], second[1])


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_arrays_are_accepted(tmp_path, suffix):
    images = smooth_images(6, size=20)
    path = tmp_path / f"images{suffix}"
    (np.save if suffix == ".npy" else lambda p, a: np.savez(p, images=a))(path, images / 255.0)
    train, _ = datasets.read_dataset(path, 16)
    assert train.shape == (6, 16, 16, 3) and train.dtype == np.uint8
    np.save(tmp_path / "bad.npy", np.zeros((3, 4)))
    with pytest.raises(CvaeError, match="expected images"):
        datasets.read_dataset(tmp_path / "bad.npy", 16)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CvaeError, match="cannot read"):
        datasets.read_dataset(tmp_path / "junk.npz", 16)


def test_dataset_batches_every_image_once_per_epoch():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 3), np.uint8)
    dataset = datasets.make_dataset(images, batch_size=4, shuffle=True, seed=0)
    batches = [b.numpy() for b in dataset]
    assert [len(b) for b in batches] == [4, 4, 2] and batches[0].dtype == np.uint8
    assert sorted(np.concatenate(batches)[:, 0, 0, 0]) == list(range(10))
    second_epoch = np.concatenate([b.numpy() for b in dataset])[:, 0, 0, 0]
    assert not np.array_equal(second_epoch, np.concatenate(batches)[:, 0, 0, 0])


def test_a_subset_of_a_folder_is_chosen_before_decoding(tmp_path, monkeypatch):
    folder = write_image_folder(tmp_path / "faces", n=30)
    whole, _ = datasets.read_dataset(folder, 16)
    decoded = []
    real_load_face = image_files.load_face
    monkeypatch.setattr(image_files, "load_face",
                        lambda path, *args: decoded.append(path) or real_load_face(path, *args))
    subset = datasets.read_subset(folder, 7, 16, seed=3)
    assert len(decoded) == 7  # Only the chosen files were decoded...
    np.testing.assert_array_equal(subset, datasets.random_subset(whole, 7, seed=3))  # ...the same ones.
    assert len(datasets.read_subset(folder, 100, 16)) == 30
    assert len(datasets.read_subset(folder, None, 16)) == 30  # None: all of them.
    assert datasets.random_subset(whole, None) is whole


def test_image_batches_cover_every_image_once_an_epoch_reshuffled_and_flipped():
    # The training batches of backends without TensorFlow (make_dataset's
    # PyDataset): each image once per epoch, in a new order, about half flipped.
    images = smooth_images(20)
    batches = datasets._image_batches_class()(images, batch_size=8, shuffle=True, flip=True, seed=0)
    assert len(batches) == 3

    def epoch():
        out = np.concatenate([batches[index] for index in range(len(batches))])
        batches.on_epoch_end()
        return out

    first, second = epoch(), epoch()
    assert first.dtype == np.uint8 and first.shape == images.shape

    def which(batch):
        # Each output is an image or its mirror image: find which, and whether flipped.
        found = []
        for image in batch:
            for index, original in enumerate(images):
                if np.array_equal(image, original):
                    found.append((index, False))
                elif np.array_equal(image, original[:, ::-1]):
                    found.append((index, True))
        return found

    first_found, second_found = which(first), which(second)
    assert sorted(index for index, _ in first_found) == list(range(20))
    assert [index for index, _ in first_found] != [index for index, _ in second_found]
    assert 3 <= sum(flipped for _, flipped in first_found + second_found) <= 37
    plain = datasets._image_batches_class()(images, batch_size=8, shuffle=False, flip=False)
    np.testing.assert_array_equal(np.concatenate([plain[i] for i in range(3)]), images)


def test_a_pack_reads_back_as_its_source_with_the_same_split(tmp_path):
    folder = write_image_folder(tmp_path / "faces", n=30)
    images, keys = datasets.read_keyed(folder, 16)
    pack = tmp_path / "faces.npz"
    np.savez(pack, **datasets.encode_pack(images, keys, quality=90))
    assert datasets.is_pack(pack) and not datasets.is_pack(folder)
    packed, packed_keys = datasets.read_pack(pack)
    assert packed_keys == keys and packed.shape == images.shape
    assert np.abs(packed.astype(int) - images).mean() < 8  # Lossy, but close.
    train, validation = datasets.read_dataset(folder, 16, validation_fraction=0.3)
    packed_train, packed_validation = datasets.read_dataset(pack, 16, validation_fraction=0.3)
    assert len(packed_train) == len(train) and len(packed_validation) == len(validation) > 0
    assert np.abs(packed_validation.astype(int) - validation).mean() < 8
    assert datasets.read_dataset(pack, 8)[0].shape == (30, 8, 8, 3)  # Resized like any array.


def test_a_damaged_pack_is_one_clear_error(tmp_path):
    images, keys = datasets.read_keyed(write_image_folder(tmp_path / "faces", n=4), 16)
    arrays = datasets.encode_pack(images, keys)
    arrays["webp_bytes"] = arrays["webp_bytes"][:-10]
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(CvaeError, match="damaged pack"):
        datasets.read_dataset(tmp_path / "cut.npz", 16)
    with pytest.raises(CvaeError, match="quality"):
        datasets.encode_pack(images, keys, quality=0)
