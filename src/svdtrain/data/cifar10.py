"""CIFAR-10 in its standard python-pickle format, with a checksum-verified download."""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from svdtrain.bounds import read_file
from svdtrain.data.arrays import ImageArrays, check_labels

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TIMEOUT_S = 60.0  # the longest a download waits on the server for a byte: without it, a server that accepts and
# never answers holds the run for ever
ARCHIVE_BYTES = 256 << 20  # the archive is 163 MiB: a server sending more is not sending it (and would fill the disk)
BATCH_BYTES = 64 << 20  # a batch file is 30 MiB (10,000 images)


def _batch_folder(root: Path) -> Path | None:
    for candidate in (root / FOLDER, root):
        if all((candidate / name).exists() for name in TRAIN_FILES + TEST_FILES):
            return candidate
    return None


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 batch file holds (dicts, lists, bytes, numbers, numpy arrays)
    and nothing else: a plain ``pickle.load`` runs whatever code a crafted file names."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {  # encode: bytes in protocol 2
        (f"numpy.{core}.{module}", name)
        for core in ("core", "_core")
        for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch file never holds")


def _read_batches(folder: Path, names: tuple[str, ...]) -> ImageArrays:
    images, labels = [], []
    for name in names:
        path = folder / name
        raw = read_file(path, what="CIFAR-10 batch file", limit=BATCH_BYTES)
        try:
            batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            batch_labels = np.asarray(batch[b"labels"]).reshape(-1)
        except (EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError, OverflowError) as error:
            detail = str(error)[:200]
            raise ValueError(f"{path} is not a CIFAR-10 batch file ({type(error).__name__}: {detail})") from None
        check_labels(batch_labels, len(CLASSES), str(path))
        images.append(data.transpose(0, 2, 3, 1))  # (N, 32, 32, 3)
        labels.append(batch_labels.astype(np.int64))
    return ImageArrays(np.concatenate(images), np.concatenate(labels), list(CLASSES))


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path) -> None:
    """``url`` into ``target``, waiting at most TIMEOUT_S for each answer, taking at most ARCHIVE_BYTES."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(target, "wb") as f:  # noqa: S310 (file: too)
        taken = 0
        while chunk := response.read(1 << 20):
            taken += len(chunk)
            if taken > ARCHIVE_BYTES:
                raise OSError(f"it sent more than {ARCHIVE_BYTES:,} bytes, which the archive is not")
            f.write(chunk)


def download_cifar10(root: Path, url: str = URL, md5: str = MD5) -> None:
    """Fetch the archive into ``root``, verify its MD5, unpack it; a bad file is removed."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    partial = archive.with_suffix(".part")
    try:
        _fetch(url, partial)
    except OSError as error:
        partial.unlink(missing_ok=True)
        stalled = isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError)
        detail = f"no answer in {TIMEOUT_S:g} s" if stalled else str(error)
        raise OSError(
            f"could not download CIFAR-10 from {url} ({detail}); offline, put the python-pickle files "
            f"({FOLDER}/data_batch_1..5, test_batch) under {root}"
        ) from error
    if md5sum(partial) != md5:
        partial.unlink(missing_ok=True)
        raise ValueError(f"CIFAR-10 download from {url} failed its MD5 check; nothing was kept")
    partial.replace(archive)
    # Unpack beside the target and rename, so a half-unpacked folder never looks complete.
    staging = Path(tempfile.mkdtemp(prefix=".cifar-", dir=root))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        (staging / FOLDER).replace(root / FOLDER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_cifar10(root: str | Path, download: bool = False) -> tuple[ImageArrays, ImageArrays]:
    """Train and test splits from ``root`` (holding ``cifar-10-batches-py/`` or its files)."""
    root = Path(root)
    folder = _batch_folder(root)
    if folder is None and download:
        download_cifar10(root)
        folder = _batch_folder(root)
    if folder is None:
        raise FileNotFoundError(
            f"CIFAR-10 not found under {root}: expected {FOLDER}/data_batch_1..5 and test_batch "
            "(pass download=True / --download when online)"
        )
    return _read_batches(folder, TRAIN_FILES), _read_batches(folder, TEST_FILES)
