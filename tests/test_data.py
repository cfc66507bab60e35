"""Natural-image patch pipeline: whitening, normalisation, block-wise split, sources, cache, errors."""
import os

import numpy as np
import pytest
import torch

from hitchhiker.book.pvae import data as D


def _pink_noise(shape, seed=0):
    """An image with a natural 1/f amplitude spectrum."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / f
    return np.real(np.fft.ifft2(spectrum))


def test_filter_shape_zero_at_dc_and_peak_location():
    filt = D.olshausen_field_filter((64, 64), f0=0.2)
    assert filt.shape == (64, 64)
    assert filt[0, 0] == 0
    # R(f) = f exp(-(f/f0)^4) peaks at f = f0 / 4**(1/4)
    f = np.sqrt(np.fft.fftfreq(64)[:, None] ** 2 + np.fft.fftfreq(64)[None, :] ** 2)
    peak = f.ravel()[filt.argmax()]
    assert abs(peak - 0.2 / 4 ** 0.25) < 1.5 / 64
    with pytest.raises(ValueError, match="f0"):
        D.olshausen_field_filter((8, 8), f0=0)


def test_whitening_flattens_a_1_over_f_spectrum():
    image = _pink_noise((128, 128))
    white = D.whiten(image, f0=10.0)  # f0 far above Nyquist: the pure ramp R(f) = f
    power = np.abs(np.fft.fft2(white)) ** 2
    f = np.sqrt(np.fft.fftfreq(128)[:, None] ** 2 + np.fft.fftfreq(128)[None, :] ** 2)
    low = power[(f > 0.05) & (f < 0.1)].mean()
    high = power[(f > 0.3) & (f < 0.45)].mean()
    raw = np.abs(np.fft.fft2(image)) ** 2
    assert raw[(f > 0.05) & (f < 0.1)].mean() / raw[(f > 0.3) & (f < 0.45)].mean() > 10
    assert 0.7 < low / high < 1.4


def test_preprocess_zscores_and_equalises_contrast():
    image = _pink_noise((128, 128), seed=1)
    image[:, 64:] *= 20.0  # one half has 20x the contrast
    out = D.preprocess_image(image)
    assert abs(out.mean()) < 1e-8 and abs(out.std() - 1) < 1e-8
    ratio = out[:, 80:].std() / out[:, :48].std()
    white = D.whiten(image)
    assert white[:, 80:].std() / white[:, :48].std() > 10  # whitening alone keeps most of the 20x
    assert ratio < 5
    with pytest.raises(ValueError, match="image"):
        D.preprocess_image(np.zeros(5))
    with pytest.raises(ValueError, match="constant"):
        D.zscore(np.ones((4, 4)))


def test_block_split_is_disjoint_and_patches_come_from_their_blocks():
    images = [np.arange(128 * 192, dtype=float).reshape(128, 192)]  # every pixel value unique
    train, val, split = D.extract_patches(images, 200, 50, patch_size=16, block_size=32, seed=3)
    assert train.shape == (200, 256) and val.shape == (50, 256)
    assert set(split["train"]).isdisjoint(split["val"])
    assert len(split["train"]) + len(split["val"]) == (128 // 32) * (192 // 32)

    def block_of(patch):
        top, left = divmod(int(patch[0]), 192)
        return (0, top - top % 32, left - left % 32)

    for patch in train:
        assert block_of(patch) in split["train"]
        assert patch[-1] - patch[0] == 15 * 192 + 15  # a whole patch inside one block
    for patch in val:
        assert block_of(patch) in split["val"]
    assert not set(map(tuple, train.astype(int))) & set(map(tuple, val.astype(int)))


def test_extract_patches_rejects_bad_arguments():
    images = [np.zeros((64, 64))]
    with pytest.raises(ValueError, match="n_train"):
        D.extract_patches(images, 0, 5)
    with pytest.raises(ValueError, match="val_fraction"):
        D.extract_patches(images, 5, 5, block_size=16, val_fraction=1.0)
    with pytest.raises(ValueError, match="block_size"):
        D.extract_patches(images, 5, 5, block_size=8)


def test_skimage_default_source_and_cache(tmp_path):
    data = D.natural_image_patches(300, 100, images=("camera", "coffee"), cache_dir=tmp_path)
    assert data.train.shape == (300, 256) and data.val.shape == (100, 256)
    assert data.train.dtype == torch.float32 and torch.isfinite(data.train).all()
    assert 0.5 < float(data.train.std()) < 1.5
    cached = list(tmp_path.glob("patches-skimage-*.npz"))
    assert len(cached) == 1
    again = D.natural_image_patches(300, 100, images=("camera", "coffee"), cache_dir=tmp_path)
    assert torch.equal(again.train, data.train)
    # the cache is what is read back: tamper with it and the change shows up
    with np.load(cached[0]) as f:
        train, val = f["train"] * 0 + 7, f["val"]
    np.savez(cached[0], train=train, val=val)
    assert float(D.natural_image_patches(300, 100, images=("camera", "coffee"),
                                         cache_dir=tmp_path).train.mean()) == 7
    # a different seed is a different cache entry
    other = D.natural_image_patches(300, 100, images=("camera", "coffee"), cache_dir=tmp_path, seed=1)
    assert not torch.equal(other.train, data.train)


def test_damaged_cache_is_rebuilt(tmp_path):
    data = D.natural_image_patches(50, 20, images=("camera",), cache_dir=tmp_path)
    cached = next(tmp_path.glob("*.npz"))
    cached.write_bytes(b"not a zip")
    again = D.natural_image_patches(50, 20, images=("camera",), cache_dir=tmp_path)
    assert torch.equal(again.train, data.train)


def test_default_cache_dir_is_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("HITCHHIKER_CACHE", str(tmp_path / "c"))
    assert D.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("HITCHHIKER_CACHE")
    assert D.default_cache_dir().parts[-2:] == (".cache", "hitchhiker")


def _write_iml(path, seed=0):
    rng = np.random.default_rng(seed)
    image = (1000 + 500 * rng.random(D.VAN_HATEREN_SHAPE)).astype(">u2")
    image.tofile(path)
    return image


def test_van_hateren_iml_reader(tmp_path):
    image = _write_iml(tmp_path / "imk00001.iml")
    read = D.read_van_hateren_iml(tmp_path / "imk00001.iml")
    assert read.shape == (1024, 1536)
    np.testing.assert_array_equal(read, image.astype(float))
    # big-endian: reading the same bytes little-endian would give other numbers
    assert not np.array_equal(read, np.fromfile(tmp_path / "imk00001.iml", "<u2").reshape(1024, 1536))


def _two_van_hateren_images(tmp_path):
    """A folder holding two small-raw-format van Hateren images (seeds 0 and 1)."""
    folder = tmp_path / "vh"
    folder.mkdir()
    _write_iml(folder / "imk00001.iml", 0)
    _write_iml(folder / "imk00002.iml", 1)
    return folder


def test_van_hateren_source_end_to_end(tmp_path):
    folder = _two_van_hateren_images(tmp_path)
    data = D.natural_image_patches(200, 50, source="van_hateren", path=folder, cache_dir=tmp_path)
    assert data.train.shape == (200, 256) and torch.isfinite(data.train).all()



def test_images_replaced_in_place_are_a_new_cache_entry(tmp_path):
    folder = _two_van_hateren_images(tmp_path)
    first = D.natural_image_patches(100, 20, source="van_hateren", path=folder, cache_dir=tmp_path)
    stamp = os.stat(folder).st_mtime_ns
    _write_iml(folder / "imk00002.iml", 2)                 # same name, new content
    os.utime(folder, ns=(stamp, stamp))                     # the directory's own time unchanged
    second = D.natural_image_patches(100, 20, source="van_hateren", path=folder, cache_dir=tmp_path)
    assert not torch.equal(first.train, second.train)
    assert len(list(tmp_path.glob("patches-van_hateren-*.npz"))) == 2
    assert not list(tmp_path.glob("*.tmp"))                 # written through a temporary file, renamed
    # an array source is keyed by its content
    array = tmp_path / "patches.npy"
    np.save(array, np.ones((40, 256)))
    ones = D.natural_image_patches(20, 10, source="array", path=array, cache_dir=tmp_path)
    np.save(array, np.full((40, 256), 2.0))
    assert not torch.equal(ones.train, D.natural_image_patches(20, 10, source="array", path=array,
                                                                cache_dir=tmp_path).train)

def test_corrupt_or_missing_files_name_the_path(tmp_path):
    bad = tmp_path / "imk_truncated.iml"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(ValueError, match="imk_truncated.iml"):
        D.read_van_hateren_iml(bad)
    with pytest.raises(FileNotFoundError, match="nothere.iml"):
        D.read_van_hateren_iml(tmp_path / "nothere.iml")
    with pytest.raises(FileNotFoundError, match="empty_dir"):
        (tmp_path / "empty_dir").mkdir()
        D.van_hateren_images(tmp_path / "empty_dir")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(ValueError, match="broken.npz"):
        D.load_patch_array(broken)
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        D.natural_image_patches(10, 5, source="array", path=tmp_path / "missing.npy", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="source"):
        D.natural_image_patches(10, 5, source="imagenet")
    with pytest.raises(ValueError, match="path"):
        D.natural_image_patches(10, 5, source="array")


def test_patch_array_source(tmp_path):
    patches = np.random.default_rng(0).standard_normal((120, 16, 16))
    np.save(tmp_path / "p.npy", patches)
    np.savez(tmp_path / "p.npz", patches=patches.reshape(120, 256))
    for name in ("p.npy", "p.npz"):
        data = D.natural_image_patches(80, 30, source="array", path=tmp_path / name, cache_dir=tmp_path)
        flat = patches.reshape(120, 256).astype(np.float32)
        np.testing.assert_array_equal(data.val.numpy(), flat[-30:])
        np.testing.assert_array_equal(data.train.numpy(), flat[10:90])
    with pytest.raises(ValueError, match="fewer than"):
        D.natural_image_patches(100, 30, source="array", path=tmp_path / "p.npy", cache_dir=tmp_path)
    np.save(tmp_path / "wrong.npy", np.zeros((10, 15)))
    with pytest.raises(ValueError, match="wrong.npy"):
        D.load_patch_array(tmp_path / "wrong.npy")


def test_download_validates_urls_without_network(tmp_path):
    with pytest.raises(ValueError, match="urls"):
        D.download_van_hateren("https://example.org/readme.txt", tmp_path)
    # a file already present with the right size is not downloaded again
    _write_iml(tmp_path / "imk00009.iml")
    paths = D.download_van_hateren("https://example.invalid/imk00009.iml", tmp_path)
    assert paths == [tmp_path / "imk00009.iml"]
