"""Decoding CIFAR-10's image files (the image-folder layout) into one uint8 tensor.

Split out of cifar10_data.py, which finds the layout and reads the pickles; this module only turns
image files into pixels and names what is unreadable in a DataUnavailableError.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from hgbench.contracts.errors import DataUnavailableError

IMAGE_SHAPE = (3, 32, 32)


def decode_images(files: list[Path]) -> Tensor:
    """Decode image files into one uint8 (N, 3, 32, 32) tensor.

    JPEGs go through torchvision's batched decoder (`decode_jpeg` on a list: one call for the
    whole split); other formats, and every file of a batch the decoder refuses (to name the
    broken one), are decoded one by one. Anything unreadable is a DataUnavailableError.
    """
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    raw = [_read_image_bytes(p) for p in files]
    images: list[Tensor | None] = [None] * len(files)
    jpeg = [i for i, r in enumerate(raw) if r[:3] == _JPEG_MAGIC]
    with warnings.catch_warnings():
        # torchvision 0.29 warns on every decode that torchcodec will take decoding over.
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        if jpeg:
            try:
                decoded = decode_jpeg([_as_tensor(raw[i]) for i in jpeg], mode=ImageReadMode.RGB)
            except RuntimeError:
                decoded = [None] * len(jpeg)
            for i, image in zip(jpeg, decoded, strict=True):
                images[i] = image
        for i, r in enumerate(raw):
            if images[i] is None:
                try:
                    images[i] = decode_image(_as_tensor(r), mode=ImageReadMode.RGB)
                except RuntimeError as exc:
                    raise DataUnavailableError(
                        f"cannot decode image {files[i]}: {one_line(exc)}"
                    ) from exc
    for path, image in zip(files, images, strict=True):
        assert image is not None
        if tuple(image.shape) != IMAGE_SHAPE:
            raise DataUnavailableError(
                f"image {path} has shape {tuple(image.shape)}; CIFAR-10 images are {IMAGE_SHAPE}"
            )
    return torch.stack(images)  # type: ignore[arg-type]


_JPEG_MAGIC = b"\xff\xd8\xff"


def _read_image_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise DataUnavailableError(
            f"{path} is a directory, not an image file (image folders hold "
            "<split>/<class>/<image file>)"
        ) from None
    except OSError as exc:
        raise DataUnavailableError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if not raw:
        raise DataUnavailableError(f"image {path} is empty (0 bytes)")
    return raw


def _as_tensor(raw: bytes) -> Tensor:
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")
