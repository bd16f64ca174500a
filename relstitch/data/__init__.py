"""Data: the :class:`Dataset` type (:mod:`.dataset`) and the registry of data sources (:mod:`.sources`):
``builtin:``, ``idx:``, ``imagefolder:``, ``tensors:``, ``npy:``/``npz:``, ``jsonl:``, ``csv:``/``tsv:``,
``parquet:``, ``hfds:`` and ``#captions=``.

``load_dataset("builtin:test")`` is the one entry point; see :mod:`relstitch.data.sources` for every kind.
"""

from .dataset import (
    CAPTION_VIEW,
    MAX_IMAGE_SIDE,
    Dataset,
    check_input_spec,
    default_image_spec,
    prepare_images,
    with_class_captions,
)
from .sources import BUILTIN_FILE, DATA_SOURCES, FASHION_MNIST_CLASSES, load_dataset, read_images

__all__ = [
    "BUILTIN_FILE",
    "CAPTION_VIEW",
    "DATA_SOURCES",
    "FASHION_MNIST_CLASSES",
    "MAX_IMAGE_SIDE",
    "Dataset",
    "check_input_spec",
    "default_image_spec",
    "load_dataset",
    "prepare_images",
    "read_images",
    "with_class_captions",
]
