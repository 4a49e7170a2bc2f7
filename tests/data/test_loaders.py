"""CIFAR-10 pickles, image folders and tarballs, on small files the tests write themselves."""

import hashlib
import os
import pickle
import socket
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

from svdtrain.data import cifar10, image_folder, load_cifar10, load_image_folder
from svdtrain.data.arrays import ImageArrays
from svdtrain.data.cifar10 import TEST_FILES, TRAIN_FILES, download_cifar10


def _write_cifar(folder, per_batch=4, seed=0, labels=None):
    """Batch files of random images; ``labels``, where given, those of data_batch_1."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in TRAIN_FILES + TEST_FILES:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": labels if labels and name == "data_batch_1" else rng.integers(0, 10, per_batch).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))


@pytest.mark.parametrize("label", [999, -1])
def test_cifar10_labels_outside_the_classes_are_named_with_their_file(tmp_path, label):
    _write_cifar(tmp_path / "cifar-10-batches-py", labels=[3] + [label] * 3)
    with pytest.raises(ValueError, match=rf"^{tmp_path}/cifar-10-batches-py/data_batch_1 has 3 label\(s\) outside the "
                                         rf"10 classes 0..9, the first {label} \(example 1\)$"):  # fmt: skip
        load_cifar10(tmp_path)


def test_every_image_dataset_checks_its_labels_against_its_classes():
    with pytest.raises(ValueError, match=r"^the data has 1 label\(s\) outside the 2 classes 0..1, the first 5 "
                                         r"\(example 1\)$"):
        ImageArrays(np.zeros((2, 1, 1, 1), np.uint8), np.array([0, 5]), ["cat", "dog"])


def test_cifar10_labels_that_are_not_integers_are_refused(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py", labels=[1.5] * 4)
    with pytest.raises(ValueError, match=r"data_batch_1 has labels of type float64, not integer class indices$"):
        load_cifar10(tmp_path)


def test_cifar10_pickles_load_as_hwc_uint8(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    train, test = load_cifar10(tmp_path)
    assert train.images.shape == (20, 32, 32, 3) and test.images.shape == (4, 32, 32, 3)
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    np.testing.assert_array_equal(train.images[0, :, :, 0].reshape(-1), raw[b"data"][0, :1024])
    assert train.labels[:4].tolist() == raw[b"labels"]


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_pickles_of_every_protocol_load(tmp_path, protocol):
    """The official files are Python 2 pickles (protocol 2); numpy arrays of newer protocols
    take another path (out-of-band buffers)."""
    _write_cifar(tmp_path / "cifar-10-batches-py")
    for name in TRAIN_FILES + TEST_FILES:
        path = tmp_path / "cifar-10-batches-py" / name
        path.write_bytes(pickle.dumps(pickle.loads(path.read_bytes()), protocol=protocol))
    assert load_cifar10(tmp_path)[0].images.shape == (20, 32, 32, 3)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_crafted_cifar10_file_runs_no_code(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    marker = tmp_path / "ran"
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({b"data": _Payload(marker)}))
    with pytest.raises(ValueError, match=r"data_batch_3 is not a CIFAR-10 batch file \(UnpicklingError: it names "
                                         r"(posix|os)\.system, which a CIFAR-10 batch file never holds\)"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_cifar10_missing_says_where_to_put_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/data_batch_1..5"):
        load_cifar10(tmp_path / "nowhere")


def _archive(tmp_path):
    _write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_verifies_checksum_and_unpacks(tmp_path):
    archive, md5 = _archive(tmp_path)
    root = tmp_path / "data"
    download_cifar10(root, url=archive.as_uri(), md5=md5)
    train, _ = load_cifar10(root)
    assert len(train) == 20


def test_download_with_bad_checksum_keeps_nothing(tmp_path):
    archive, _ = _archive(tmp_path)
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="MD5"):
        download_cifar10(root, url=archive.as_uri(), md5="0" * 32)
    assert list(root.iterdir()) == []


def test_download_offline_error_names_folder(tmp_path):
    with pytest.raises(OSError, match="put the python-pickle files"):
        download_cifar10(tmp_path, url=(tmp_path / "missing.tar.gz").as_uri())


def test_download_from_a_server_that_never_answers_gives_up_naming_the_url(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "TIMEOUT_S", 0.5)
    fallback = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)  # so that a download without a timeout of its own fails this test, not hangs it
    with socket.create_server(("127.0.0.1", 0)) as server:  # the kernel accepts connections; nobody answers them
        url = f"http://127.0.0.1:{server.getsockname()[1]}/cifar-10-python.tar.gz"
        started = time.monotonic()
        try:
            with pytest.raises(OSError, match=rf"^could not download CIFAR-10 from {url} \(no answer in 0.5 s\); "):
                download_cifar10(tmp_path, url=url)
        finally:
            socket.setdefaulttimeout(fallback)
    assert time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == []


def test_download_stops_at_more_bytes_than_the_archive_has(tmp_path, monkeypatch):
    archive, md5 = _archive(tmp_path)
    monkeypatch.setattr(cifar10, "ARCHIVE_BYTES", archive.stat().st_size - 1)
    with pytest.raises(OSError, match=rf"\(it sent more than {archive.stat().st_size - 1:,} bytes, which the archive "):
        download_cifar10(tmp_path / "data", url=archive.as_uri(), md5=md5)
    assert list((tmp_path / "data").iterdir()) == []


def test_image_folder_files_must_be_regular_and_image_sized(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="^image archive /dev/zero is a character device, not a regular file$"):
        load_image_folder("/dev/zero")
    _image_tree(tmp_path / "tree")
    os.mkfifo(tmp_path / "tree" / "train" / "cat" / "waits.png")  # opened to decode, it would wait for a writer
    with pytest.raises(ValueError, match=r"^image .*waits.png is a FIFO \(named pipe\), not a regular file$"):
        load_image_folder(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "cat" / "waits.png").unlink()
    with tarfile.open(tmp_path / "tree.tar", "w") as tar:
        tar.add(tmp_path / "tree", arcname="tree")
    monkeypatch.setattr(image_folder, "IMAGE_BYTES", 10)
    with pytest.raises(ValueError, match=r"tree.tar: tree/test/cat/0000.png is too large for an image: .* bytes, at "
                                         r"most 10$"):  # fmt: skip
        load_image_folder(tmp_path / "tree.tar")


def _image_tree(root, size=(6, 6)):
    rng = np.random.default_rng(1)
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i:04d}.png")


def test_image_folder_from_dir_and_tarball_agree_and_cache(tmp_path):
    _image_tree(tmp_path / "tree")
    tarball = tmp_path / "tree.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname="tree")
    from_dir = load_image_folder(tmp_path / "tree")
    from_tar = load_image_folder(tarball, cache_dir=tmp_path / "cache")
    for a, b in zip(from_dir, from_tar):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)
    assert from_dir[0].classes == ["cat", "dog"] and from_dir[0].images.shape == (6, 6, 6, 3)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    cached = load_image_folder(tarball, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(cached[1].images, from_tar[1].images)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data not found"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no train/<class>/<image>"):
        load_image_folder(tmp_path / "empty")


def test_image_folder_of_mixed_sizes_needs_and_takes_an_image_size(tmp_path):
    _image_tree(tmp_path / "tree", size=(6, 6))
    Image.fromarray(np.full((12, 8, 3), 200, dtype=np.uint8)).save(tmp_path / "tree" / "train" / "cat" / "big.png")
    with pytest.raises(ValueError, match="--image-size"):
        load_image_folder(tmp_path / "tree")
    train, test = load_image_folder(tmp_path / "tree", cache_dir=tmp_path / "cache", image_size=4)
    assert train.images.shape == (7, 4, 4, 3) and test.images.shape == (4, 4, 4, 3)
    assert any(name.endswith(".4px.npz") for name in map(str, (tmp_path / "cache").iterdir()))
    big = [img for img in train.images if (img == 200).all()]
    assert len(big) == 1  # the uniform 12x8 image, resized and centre-cropped, stays uniform
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(tmp_path / "tree", image_size=0)
