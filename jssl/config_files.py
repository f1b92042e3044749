"""The config files that ship with jssl, found by name or path, and loaded with one-line errors.

The recipes live in the top-level `configs/` folder of a source checkout; the wheel installs the
same files as `jssl/configs/` (`setup.py` maps the folder there), so an installed jssl finds
them without a checkout. `--config simclr_mnist[:variant]` names a shipped config;
`--config path/to/file.py[:variant]` a file anywhere (`configs/<name>.py` falls back to the
shipped config of that name when no such file exists, so the README's commands work from any
directory).

A config file defines `get_config(variant=None)`; `name:variant` passes `variant`. Loading it
here, rather than through `ml_collections.config_flags`' file flag, turns a missing file, a
syntax error or a bad variant into one line (config_flags embeds a traceback in the message).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import inspect
import os
import re

import ml_collections

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT = "simclr_mnist"


def configs_dir() -> str:
    """`jssl/configs/` of an installed wheel, else the `configs/` folder beside the package."""
    installed = os.path.join(_PACKAGE_DIR, "configs")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(_PACKAGE_DIR), "configs")


def shipped() -> dict[str, str]:
    """Name -> path of every shipped config, by name."""
    folder = configs_dir()
    if not os.path.isdir(folder):
        return {}
    names = sorted(f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("_"))
    return {name: os.path.join(folder, f"{name}.py") for name in names}


def _docstring(path: str) -> str:
    """The config file's docstring, read without running the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return ast.get_docstring(ast.parse(f.read(), filename=path)) or ""
    except (OSError, SyntaxError, ValueError):
        return ""


def summary(path: str, width: int = 110) -> str:
    """The first paragraph of the config file's docstring, cut to `width` characters."""
    first = " ".join(_docstring(path).strip().split("\n\n")[0].split())
    return first if len(first) <= width else first[: width - 3].rstrip() + "..."


def variants(path: str) -> list[str]:
    """The variants a config file's docstring lists: the backticked names of its "Variants" paragraph."""
    paragraph = next((p for p in _docstring(path).split("\n\n") if p.lstrip().startswith("Variants")), "")
    # Parenthesized descriptions may quote other names; the variants are outside them.
    return re.findall(r"`(\w+)`", re.sub(r"\([^()]*\)", "", paragraph))


def _not_found(path: str) -> ValueError:
    known = shipped()
    name = os.path.splitext(os.path.basename(path))[0]
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return ValueError(
        f"no config file {path!r} and no shipped config {name!r}; {hint}"
        f"(`jssl configs` lists the {len(known)} shipped configs)"
    )


def resolve(spec: str) -> tuple[str, str | None]:
    """`'<name or path>[:variant]'` -> (path of the config file, variant or None)."""
    path, sep, variant = spec.partition(":")
    if not path:
        raise ValueError(f"--config={spec!r} names no file: pass a shipped config's name or a file's path")
    expanded = os.path.expanduser(path)
    if not os.path.isfile(expanded):
        folder, base = os.path.split(path)
        name = base[:-3] if base.endswith(".py") else base
        # A bare name, or the README's `configs/<name>.py` outside a checkout: the shipped file.
        if folder.rstrip("/") in ("", "configs") and name in shipped():
            expanded = shipped()[name]
        else:
            raise _not_found(path)
    return os.path.abspath(expanded), (variant if sep else None)


def load(spec: str) -> tuple[ml_collections.ConfigDict, str]:
    """Runs the config file `spec` names and returns (its locked `get_config(variant)`, its path).

    Bad input (no such file, a syntax error, no `get_config`, a variant it rejects) raises a
    one-line `ValueError`; any other exception inside the file is a bug there and propagates.
    """
    path, variant = resolve(spec)
    name = os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(f"jssl_config_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        where = f"{e.filename or path}, line {e.lineno}" if e.lineno else (e.filename or path)
        raise ValueError(f"{where}: {type(e).__name__}: {e.msg}: fix the config file") from e
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ValueError(f"{path} defines no get_config(variant=None): not a jssl config file")
    args = () if variant is None else (variant,)
    if args and not _accepts_one_argument(get_config):
        raise ValueError(f"config {name} has no variants: drop ':{variant}' (or override fields with --config.*)")
    try:
        config = get_config(*args)
    except ValueError as e:  # the config files' convention: an unknown variant, with the known ones
        message = str(e).strip()
        raise ValueError(message if name in message else f"config {name}: {message}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"{path}: get_config() returned {type(config).__name__}, not an ml_collections.ConfigDict")
    config.lock()
    return config, path


def _accepts_one_argument(function) -> bool:
    try:
        inspect.signature(function).bind("variant")
    except TypeError:
        return False
    return True
