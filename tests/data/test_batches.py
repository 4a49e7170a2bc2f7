import numpy as np
import pytest
import torch

from svdtrain.data import ImageArrays, TensorBatches, random_crop_flip


def _arrays(n=10):
    images = np.arange(n * 4 * 4 * 3, dtype=np.int64).reshape(n, 4, 4, 3) % 256
    return ImageArrays(images.astype(np.uint8), np.arange(n) % 3, ["a", "b", "c"])


def test_crop_without_padding_is_identity_or_mirror():
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    out = random_crop_flip(images, padding=0, generator=torch.Generator().manual_seed(0))
    for original, got in zip(images, out):
        assert torch.equal(got, original) or torch.equal(got, original.flip(2))


def test_crop_with_padding_is_a_shifted_window():
    images = torch.rand(16, 1, 6, 6) + 1  # strictly positive, so padding shows as zeros
    out = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for n in range(16):
        windows = [padded[n, :, y : y + 6, x : x + 6] for y in range(5) for x in range(5)]
        windows += [w.flip(2) for w in windows]
        assert any(torch.equal(out[n], w) for w in windows)


def test_epochs_are_reproducible_and_differ():
    batches = TensorBatches(_arrays(), 4, mean=[0, 0, 0], std=[1, 1, 1], shuffle=True, augment=True, seed=5)
    batches.set_epoch(1)
    first = [y.tolist() for _, y in batches]
    again = [y.tolist() for _, y in batches]
    batches.set_epoch(2)
    other = [y.tolist() for _, y in batches]
    assert first == again and first != other
    assert sorted(sum(first, [])) == sorted((np.arange(10) % 3).tolist())


def test_normalization_uses_0_255_scale():
    batches = TensorBatches(_arrays(2), 2, mean=[0.5] * 3, std=[0.25] * 3)
    x, _ = next(iter(batches))
    expected = (torch.from_numpy(_arrays(2).images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(x, expected)


def test_mean_and_std_of_the_wrong_length_name_the_flags_and_counts():
    message = r"--mean, --std\) need 3 value\(s\) each for these 3-channel images, got 1 and 1"
    with pytest.raises(ValueError, match=message):
        TensorBatches(_arrays(2), 2, mean=[0.5], std=[0.25])


def test_limit_takes_a_fixed_subset_that_spans_class_sorted_data():
    labels = np.repeat(np.arange(10), 100)  # stored class by class, as image folders are
    arrays = ImageArrays(np.zeros((1000, 2, 2, 3), dtype=np.uint8), labels, [str(i) for i in range(10)])
    batches = TensorBatches(arrays, 50, mean=[0, 0, 0], std=[1, 1, 1], limit=200)
    again = TensorBatches(arrays, 50, mean=[0, 0, 0], std=[1, 1, 1], limit=200)
    assert len(batches.labels) == 200 and torch.equal(batches.labels, again.labels)
    assert len(set(batches.labels.tolist())) == 10  # the first 200 would hold two classes
    assert len(TensorBatches(arrays, 50, mean=[0, 0, 0], std=[1, 1, 1], limit=5000).labels) == 1000
