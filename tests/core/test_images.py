"""Every kind of image people have becomes HxWx3 uint8 RGB, the same way, or a UserError."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from annotator.core.images import (
    is_image_file,
    list_images,
    load_image,
    read_image_size,
)
from annotator.errors import UserError


def _load_checked(path) -> np.ndarray:
    """load_image, plus the invariants every result must have."""
    image = load_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.flags.c_contiguous
    width, height = read_image_size(path)
    assert image.shape[:2] == (height, width)
    return image


def test_rgb_png_is_unchanged(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(_load_checked(tmp_path / "rgb.png"), pixels)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    image = _load_checked(tmp_path / "gray.png")
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_one_bit_image(tmp_path):
    bits = np.zeros((8, 10), bool)
    bits[2:5, 3:7] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "bits.png")
    image = _load_checked(tmp_path / "bits.png")
    np.testing.assert_array_equal(image[..., 0] == 255, bits)


def test_16_bit_png_is_stretched_from_its_own_range(tmp_path):
    values = np.linspace(1000, 3000, 12 * 10).astype(np.uint16).reshape(12, 10)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    image = _load_checked(tmp_path / "deep.png")
    gray = image[..., 0]
    assert gray.min() == 0 and gray.max() == 255
    assert np.all(np.diff(gray.ravel().astype(int)) >= 0)  # order kept
    np.testing.assert_array_equal(image[..., 1], gray)
    # The stretch is deterministic: the same file gives the same pixels (stable cache keys).
    np.testing.assert_array_equal(load_image(tmp_path / "deep.png"), image)


def test_constant_16_bit_image_does_not_divide_by_zero(tmp_path):
    Image.fromarray(np.full((5, 6), 777, np.uint16)).save(tmp_path / "flat.png")
    assert not _load_checked(tmp_path / "flat.png").any()


def test_float_tiff_is_stretched(tmp_path):
    values = np.array([[0.0, 0.5], [1.0, np.nan]], np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "float.tif")
    gray = _load_checked(tmp_path / "float.tif")[..., 0]
    assert gray[0, 0] == 0 and gray[1, 0] == 255 and gray[0, 1] in (127, 128)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (200, 10, 20, 255)  # opaque
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent
    rgba[0, 2] = (0, 0, 0, 128)  # half transparent black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = _load_checked(tmp_path / "rgba.png")
    assert tuple(image[0, 0]) == (200, 10, 20)
    assert tuple(image[0, 1]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 1 for v in image[0, 2])


def test_gray_with_alpha(tmp_path):
    la = np.zeros((3, 3, 2), np.uint8)
    la[..., 0] = 40
    la[0, 0, 1] = 255
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    image = _load_checked(tmp_path / "la.png")
    assert tuple(image[0, 0]) == (40, 40, 40) and tuple(image[1, 1]) == (255, 255, 255)


def _palette_image(transparent_index: int | None) -> Image.Image:
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    im = Image.fromarray(indices, mode="P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    if transparent_index is not None:
        im.info["transparency"] = transparent_index
    return im


def test_palette_without_transparency(tmp_path):
    _palette_image(None).save(tmp_path / "pal.png")
    image = _load_checked(tmp_path / "pal.png")
    assert tuple(image[0, 0]) == (255, 0, 0)
    assert tuple(image[0, 1]) == (0, 255, 0)
    assert tuple(image[1, 0]) == (0, 0, 255)


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency_shows_white(tmp_path, suffix):
    im = _palette_image(transparent_index=1)
    im.save(tmp_path / f"pal{suffix}", transparency=1)
    with Image.open(tmp_path / f"pal{suffix}") as check:
        assert check.mode == "P" and "transparency" in check.info
    image = _load_checked(tmp_path / f"pal{suffix}")
    assert tuple(image[0, 1]) == (255, 255, 255)  # the transparent index
    assert tuple(image[0, 0]) == (255, 0, 0)


def test_exif_rotated_jpeg_is_shown_upright(tmp_path):
    """Orientation 6: the camera was turned; viewers rotate the stored pixels 90 degrees clockwise."""
    stored = np.full((40, 60, 3), 30, np.uint8)  # 60 wide, 40 high as stored
    stored[:10, :10] = (250, 20, 20)  # red mark in the stored top-left corner
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    assert read_image_size(tmp_path / "rotated.jpg") == (40, 60)  # (width, height) as displayed
    image = _load_checked(tmp_path / "rotated.jpg")
    assert image.shape == (60, 40, 3)
    top_right = image[:8, -8:].reshape(-1, 3).mean(axis=0)
    top_left = image[:8, :8].reshape(-1, 3).mean(axis=0)
    assert top_right[0] > 200 and top_right[1] < 60  # the mark moved to the top-right corner
    assert top_left[0] < 60


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    cmyk = np.zeros((16, 16, 4), np.uint8)
    cmyk[:8] = (255, 0, 0, 0)  # cyan
    cmyk[8:] = (0, 0, 0, 255)  # black
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as check:
        assert check.mode == "CMYK"
    image = _load_checked(tmp_path / "cmyk.jpg").astype(int)
    cyan, black = image[2, 2], image[12, 12]
    assert cyan[0] < 40 and cyan[1] > 215 and cyan[2] > 215
    assert black.max() < 40


def test_very_large_image_loads_without_the_decompression_bomb_guard(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (12000, 9000), 90).save(path, compress_level=1)  # cheap: one flat channel
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail the test
        assert read_image_size(path) == (12000, 9000)
        image = load_image(path)
    assert image.shape == (9000, 12000, 3) and image[4500, 6000, 1] == 90


def test_corrupt_and_truncated_files_are_user_errors(tmp_path):
    (tmp_path / "text.png").write_text("this is not an image\n")
    good = tmp_path / "good.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(good)
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:200])
    for name in ("text.png", "cut.jpg"):
        with pytest.raises(UserError) as info:
            load_image(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError):
        read_image_size(tmp_path / "text.png")


def test_missing_file_and_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(UserError, match="does not exist"):
        read_image_size(tmp_path / "nope.png")
    with pytest.raises(UserError):
        load_image(tmp_path)


def test_list_images_is_natural_order_and_filters(tmp_path):
    for name in ("img10.png", "img2.JPG", "img1.tif", "notes.txt", "img3.webp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["img1.tif", "img2.JPG", "img3.webp", "img10.png"]
    assert is_image_file(tmp_path / "x.JPEG") and not is_image_file(tmp_path / "x.txt")
    with pytest.raises(UserError):
        list_images(tmp_path / "img10.png")
