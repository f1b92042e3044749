"""Data for jssl: image sources, SSL view augmentations and the Grain pipeline.

Typical use by a trainer::

    from jssl import data
    source = data.get_source("mnist", "train")
    it = data.make_train_iterator(
        source, global_batch_size=256, num_views=2,
        augment="random_resized_crop(28, scale=(0.3, 1.0))|hflip", seed=0)
    batch = next(it)  # {'view_0': uint8 [256, 28, 28, 1], 'view_1': ..., 'label': int32 [256]}
"""

from jssl.data.augment import (
    AUGMENTATIONS,
    Augment,
    center_crop,
    color_jitter,
    compose,
    gaussian_blur,
    grayscale,
    hflip,
    identity,
    parse_augment,
    random_resized_crop,
    resize,
    resize_shorter,
    solarize,
)
from jssl.data.pipeline import (
    AUGMENT_ON,
    MultiViewTransform,
    check_augment_on,
    iterator_state_args,
    load_arrays,
    make_train_iterator,
    view_specs,
)
from jssl.data.prefetch import DevicePrefetch
from jssl.data.sources import (
    SOURCES,
    ArraySource,
    ImageSource,
    TfdsSource,
    embedded_digits,
    embedded_mnist,
    get_source,
    npz_source,
    tfds_source,
)

__all__ = [
    "AUGMENT_ON",
    "check_augment_on",
    "AUGMENTATIONS",
    "DevicePrefetch",
    "ArraySource",
    "Augment",
    "ImageSource",
    "MultiViewTransform",
    "SOURCES",
    "TfdsSource",
    "center_crop",
    "color_jitter",
    "compose",
    "embedded_digits",
    "embedded_mnist",
    "gaussian_blur",
    "get_source",
    "grayscale",
    "hflip",
    "identity",
    "iterator_state_args",
    "load_arrays",
    "make_train_iterator",
    "npz_source",
    "parse_augment",
    "random_resized_crop",
    "resize",
    "resize_shorter",
    "solarize",
    "tfds_source",
    "view_specs",
]
