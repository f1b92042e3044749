"""The shipped configs: found by name or path, variants as documented, every field documented in `--help`."""

from __future__ import annotations

import os

import pytest

from jssl import cli, config_docs, config_files
from jssl.data.tfds_open import open_tfds
from tests.cli.helpers import REPO

SHIPPED = config_files.shipped()


def test_a_config_is_found_by_name_by_path_and_by_the_readme_path_from_elsewhere(tmp_path, monkeypatch):
    assert set(SHIPPED) == {f[:-3] for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".py")}
    path = os.path.join(REPO, "configs", "simclr_mnist.py")
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert config_files.resolve("simclr_mnist") == (path, None)
    assert config_files.resolve("simclr_mnist:smoke") == (path, "smoke")
    assert config_files.resolve("configs/simclr_mnist.py:smoke") == (path, "smoke")
    assert config_files.resolve(path) == (path, None)
    (tmp_path / "configs").mkdir()
    mine = tmp_path / "configs" / "simclr_mnist.py"
    mine.write_text(open(path).read())
    assert config_files.resolve("configs/simclr_mnist.py") == (str(mine), None)  # a file that exists wins
    with pytest.raises(ValueError, match=r"no config file 'elsewhere/simclr_mnist.py'"):
        config_files.resolve("elsewhere/simclr_mnist.py")  # only configs/<name>.py falls back to the shipped file
    config, loaded = config_files.load("dino_mnist:smoke")
    assert loaded.endswith("dino_mnist.py") and config.method.name == "dino" and config.total_steps == 6
    with pytest.raises(AttributeError):
        config.no_such_field = 1  # locked, as config_flags' configs were


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_documented_variants_load_and_an_unknown_one_lists_them(name):
    documented = config_files.variants(SHIPPED[name])
    for variant in documented:
        config_files.load(f"{name}:{variant}")
    with pytest.raises(ValueError) as error:
        config_files.load(f"{name}:smok")
    message = str(error.value)
    assert "\n" not in message and "'smok'" in message
    assert all(f"'{v}'" in message for v in documented) and (documented or "none" in message), message


def test_every_field_of_every_config_is_documented_and_listed_by_help():
    undocumented = {}
    for name, path in SHIPPED.items():
        config, _ = config_files.load(path)
        docs = config_docs.config_field_docs(config, path, SHIPPED.values())
        fields = [field for field, _ in config_docs.flatten(config)]
        missing = [f for f in fields if not docs.get(f)]
        if missing:
            undocumented[name] = missing
        text = cli.command_help("train", [f"--config={name}"])
        listed = [line.split("=", 1)[0].strip()[len("--config.") :] for line in text.splitlines()
                  if line.startswith("  --config.")]  # fmt: skip
        assert listed == fields, f"{name}: `jssl train --help` lists {set(listed) ^ set(fields)} wrongly"
        for field in fields:
            if field in docs:
                assert " ".join(docs[field].split()[:4]) in " ".join(text.split()), f"{name}: doc of {field}"
    assert not undocumented, (
        "config fields without a doc (a comment on or above their assignment in jssl/config.py or the "
        f"config file; model.kwargs: the backbone's Args docstring): {undocumented}"
    )


def test_docs_come_from_the_comments_beside_each_assignment(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(
        '"""A config."""\n'
        "import ml_collections\n\n"
        "def get_config(variant=None):\n"
        "    config = ml_collections.ConfigDict()\n"
        "    config.a = 1  # the a\n"
        "    # The b, over\n"
        "    # two lines.\n"
        "    config.b = 2\n\n"
        "    config.c = 3\n"
        "    config.g = ml_collections.ConfigDict(dict(x=1, y=2))  # a group\n"
        "    m = config.g\n"
        "    m.z = 3  # through an alias\n"
        "    return config\n"
    )
    docs = config_docs.source_docs(str(path))
    assert docs == {"a": "the a", "b": "The b, over two lines.", "g": "a group", "g.x": "a group", "g.y": "a group",
                    "g.z": "through an alias"}  # fmt: skip
    assert config_docs.args_section("X.\n\nArgs:\n  a: first\n    continued.\n  b, c: shared.\n") == {
        "a": "first continued.", "b": "b, c: shared.", "c": "b, c: shared."
    }


def test_the_configs_listing_names_each_config_and_its_variants():
    text = cli._configs([])
    assert f"{len(SHIPPED)} shipped configs in {config_files.configs_dir()}:" in text
    line = next(line for line in text.splitlines() if line.split()[:1] == ["simclr_imagenet"])
    assert "SimCLR" in line and line.endswith("[variants :100ep]")


def test_a_tfds_name_typo_is_one_line_with_close_names(tmp_path):
    with pytest.raises(ValueError) as error:
        open_tfds("imagenet2021", "train", str(tmp_path))
    message = str(error.value)
    assert "\n" not in message and "'imagenet2012'" in message and len(message) < 400, message
    with pytest.raises(ValueError) as error:
        open_tfds("mnist", "train", str(tmp_path))  # registered but never prepared here
    message = str(error.value)
    assert "\n" not in message and "tfds build mnist --file_format=array_record" in message, message
