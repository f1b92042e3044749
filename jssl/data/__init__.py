"""Data for jssl: image sources, SSL view augmentations and the Grain pipeline.

Typical use by a trainer::

    from jssl import data
    source = data.get_source("mnist", "train")
    it = data.make_train_iterator(
        source, global_batch_size=256, num_views=2,
        augment="random_resized_crop(28, scale=(0.3, 1.0))|hflip", seed=0)
    batch = next(it)  # {'view_0': uint8 [256, 28, 28, 1], 'view_1': ..., 'label': int32 [256]}

Text (`jssl.data.text`, the `'tokens'` kind of `jssl.data.inputs`): corpora by name
(`TEXT_CORPORA`: the embedded pydoc topics, TFDS text sets), a cached byte-level BPE tokenizer
and packed token windows (`TextInputs`). Importing them imports no tokenizer library; that
happens when a tokenizer is first needed.
"""

from jssl.data.augment import (
    AUGMENTATIONS,
    Augment,
    Step,
    center_crop,
    color_jitter,
    compose,
    gaussian_blur,
    grayscale,
    hflip,
    identity,
    parse_augment,
    parse_view,
    random_resized_crop,
    resize,
    resize_shorter,
    solarize,
)
from jssl.data.decode import (
    center_square,
    decode_image,
    decode_views,
    encoded_image,
    is_encoded,
    jpeg_draft_scale,
    record_image_shape,
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
from jssl.data.text import TextInputs, make_window_iterator
from jssl.data.text_corpus import CORPORA as TEXT_CORPORA
from jssl.data.text_corpus import get_corpus

__all__ = [
    "AUGMENTATIONS",
    "AUGMENT_ON",
    "SOURCES",
    "TEXT_CORPORA",
    "ArraySource",
    "Augment",
    "DevicePrefetch",
    "ImageSource",
    "MultiViewTransform",
    "Step",
    "TextInputs",
    "TfdsSource",
    "center_crop",
    "center_square",
    "check_augment_on",
    "color_jitter",
    "compose",
    "decode_image",
    "decode_views",
    "embedded_digits",
    "embedded_mnist",
    "encoded_image",
    "gaussian_blur",
    "get_corpus",
    "get_source",
    "grayscale",
    "hflip",
    "identity",
    "is_encoded",
    "iterator_state_args",
    "jpeg_draft_scale",
    "load_arrays",
    "make_train_iterator",
    "make_window_iterator",
    "npz_source",
    "parse_augment",
    "parse_view",
    "random_resized_crop",
    "record_image_shape",
    "resize",
    "resize_shorter",
    "solarize",
    "tfds_source",
    "view_specs",
]
