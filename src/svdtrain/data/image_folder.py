"""Image-folder datasets (root/{train,test}/<class>/*.jpg), from a folder or a tarball.

Decoding 60k small JPEGs takes ~10 s, so the decoded arrays are cached once as .npz.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np

from svdtrain.bounds import check_file
from svdtrain.data.arrays import ImageArrays, load_split_cache, save_split_cache
from svdtrain.linalg import check_positive_int

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGE_BYTES = 64 << 20  # one image file: a 224 x 224 JPEG is ~100 KiB, and a tarball can hide a bomb in a member


def _decode(data: bytes | Path, size: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3); with ``size``, the shorter side resized to ``size`` and the
    centre ``size`` x ``size`` cropped (the usual ImageNet evaluation transform)."""
    try:
        from PIL import Image, ImageOps
    except ImportError as missing:
        raise ImportError("image-folder data needs Pillow: pip install 'svdtrain[pipeline]'") from missing
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
        image = image.convert("RGB")
        if size:
            image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _entries_from_tar(path: Path):
    """(split, class, name, bytes) for every image member of a tarball, any leading folder."""
    with tarfile.open(path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or Path(member.name).suffix.lower() not in IMAGE_SUFFIXES or len(parts) < 3:
                continue
            split, cls = parts[-3], parts[-2]
            if split in ("train", "test"):
                if member.size > IMAGE_BYTES:
                    raise ValueError(f"{path}: {member.name} is too large for an image: {member.size:,} bytes, "
                                     f"at most {IMAGE_BYTES:,}")  # fmt: skip
                yield split, cls, member.name, tar.extractfile(member).read()


def _entries_from_dir(root: Path):
    for split in ("train", "test"):
        for file in sorted((root / split).glob("*/*")):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                yield split, file.parent.name, str(file), check_file(file, what="image", limit=IMAGE_BYTES)


def _assemble(entries, size: int | None = None) -> tuple[ImageArrays, ImageArrays]:
    found: dict[str, list[tuple[str, str, np.ndarray]]] = {"train": [], "test": []}
    for split, cls, name, data in entries:
        found[split].append((cls, name, _decode(data, size)))
    for split, items in found.items():
        if not items:
            raise ValueError(f"image folder has no {split}/<class>/<image> files")
    classes = sorted({cls for cls, _, _ in found["train"]})
    unknown = sorted({cls for cls, _, _ in found["test"]} - set(classes))
    if unknown:
        raise ValueError(f"test classes not in train: {', '.join(unknown)}")
    shapes = {img.shape for items in found.values() for _, _, img in items}
    if len(shapes) != 1:
        raise ValueError(f"images differ in size ({len(shapes)} sizes, e.g. {sorted(shapes)[:2]}); "
                         "give an image size (--image-size N) to resize and centre-crop them")
    index = {cls: i for i, cls in enumerate(classes)}

    def split_arrays(items) -> ImageArrays:
        items = sorted(items, key=lambda item: item[1])  # file order independent of the archive's
        images = np.stack([img for _, _, img in items])
        labels = np.array([index[cls] for cls, _, _ in items], dtype=np.int64)
        return ImageArrays(images, labels, classes)

    return split_arrays(found["train"]), split_arrays(found["test"])


def _cache_key(source: Path) -> str:
    """Changes when the tarball, or any image file under the folder, changes."""
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    digest = hashlib.sha1(str(source.resolve()).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(source) if path != source else ''}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_image_folder(
    source: str | Path, cache_dir: str | Path | None = None, image_size: int | None = None
) -> tuple[ImageArrays, ImageArrays]:
    """Train and test splits of an image-folder tree or tarball (.tar, .tar.gz, .tgz).

    Images must share one size unless ``image_size`` is given: then each is resized (shorter
    side) and centre-cropped to ``image_size`` squared. With ``cache_dir``, the decoded arrays
    are stored there (keyed by the source's path, size, mtime and ``image_size``) and read
    back on later calls.
    """
    if image_size is not None:
        check_positive_int("image_size", image_size)
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"data not found: {source} (expected a folder with train/ and test/ or a tarball)")
    cache = None
    if cache_dir is not None:
        key = _cache_key(source)
        suffix = f".{image_size}px" if image_size else ""
        cache = Path(cache_dir) / f"{source.name}.{key}{suffix}.npz"
        if cache.exists():
            return load_split_cache(cache)
    if not source.is_dir():
        check_file(source, what="image archive")
    entries = _entries_from_dir(source) if source.is_dir() else _entries_from_tar(source)
    try:
        train, test = _assemble(entries, image_size)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{source} could not be read ({type(error).__name__}: {error})") from None
    if cache is not None:
        save_split_cache(cache, train, test)
    return train, test
