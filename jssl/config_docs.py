"""Each config field's one-line doc, read from the comments beside its assignment, for `jssl train --help`.

The comments in `jssl.config` (`base_config()` and the shared recipe helpers) and in the config
file itself are the documentation of a field: a comment on the assignment's own lines, or the
comment block right above it. Reading them from the source keeps `--help` from drifting away
from the code the way a second, hand-kept list of descriptions would. A sub-config built in one
assignment (`c.probe = ConfigDict(dict(enabled=True, ...))`) documents its fields by that
assignment's comment. Where several files document a field, the first file passed wins
(`jssl.config` first: what a field means, rather than why a recipe chose its value).

`model.kwargs.*` are the backbone's constructor arguments, so their docs are the "Args:" section
of the backbone class's docstring (`ResNet`, `VisionTransformer`, `UNet`, ...).
"""

from __future__ import annotations

import ast
import functools
import inspect
import io
import os
import re
import tokenize
from collections.abc import Iterable, Iterator
from typing import Any

import ml_collections


def _comments(source: str) -> dict[int, tuple[str, bool]]:
    """Line number -> (comment text, whether the comment is the line's only token)."""
    out: dict[int, tuple[str, bool]] = {}
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = (tok.string.lstrip("#").strip(), tok.start[0] not in code_lines)
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return out


def _dotted(node: ast.AST) -> list[str] | None:
    """`a.b.c` -> ['a', 'b', 'c']; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _is_config_dict(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (_dotted(node.func) or [""])[-1] == "ConfigDict"


def _dict_keys(node: ast.AST) -> list[str]:
    """The keys of `ConfigDict(dict(a=..., b=...))` or `ConfigDict({'a': ...})`; [] otherwise."""
    if not (_is_config_dict(node) and node.args):
        return []
    arg = node.args[0]
    if isinstance(arg, ast.Call) and _dotted(arg.func) == ["dict"]:
        return [k.arg for k in arg.keywords if k.arg]
    if isinstance(arg, ast.Dict):
        return [k.value for k in arg.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return []


def _roots(function: ast.FunctionDef) -> dict[str, str]:
    """Names that stand for the whole config inside `function`: its first parameter when the
    helper takes one (`def mnist(c)`), and any name assigned a base config or a new ConfigDict."""
    roots = {}
    if function.args.args and function.args.args[0].arg in ("c", "config", "cfg"):
        roots[function.args.args[0].arg] = ""
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            called = _dotted(value.func) if isinstance(value, ast.Call) else None
            if (called and called[-1] == "base_config") or (_is_config_dict(value) and not value.args):
                roots[node.targets[0].id] = ""
    return roots


def _assignments(function: ast.FunctionDef) -> Iterator[tuple[str, ast.Assign]]:
    """(field path, statement) for every `<config>.a.b = value` in `function`, following aliases
    such as `m = config.method` in source order."""
    names = _roots(function)
    statements = sorted(
        (n for n in ast.walk(function) if isinstance(n, ast.Assign) and len(n.targets) == 1), key=lambda n: n.lineno
    )
    for node in statements:
        target = node.targets[0]
        if isinstance(target, ast.Name):
            parts = _dotted(node.value)
            if parts and parts[0] in names and len(parts) > 1:
                names[target.id] = names[parts[0]] + ".".join(parts[1:]) + "."
            continue
        parts = _dotted(target)
        if parts and parts[0] in names and len(parts) > 1:
            yield names[parts[0]] + ".".join(parts[1:]), node


def _statement_doc(node: ast.Assign, comments: dict[int, tuple[str, bool]]) -> str:
    trailing = [comments[i][0] for i in range(node.lineno, node.end_lineno + 1) if i in comments]
    above = []
    line = node.lineno - 1
    while line in comments and comments[line][1]:
        above.append(comments[line][0])
        line -= 1
    return " ".join([*reversed(above), *trailing]).strip()


def source_docs(path: str) -> dict[str, str]:
    """Field path -> doc for every commented config assignment in the Python file at `path`."""
    with open(path, encoding="utf-8") as f:
        source = f.read()
    return dict(_source_docs(source, path))


@functools.lru_cache(maxsize=256)
def _source_docs(source: str, path: str) -> tuple[tuple[str, str], ...]:
    comments = _comments(source)
    docs: dict[str, str] = {}
    for function in ast.walk(ast.parse(source, filename=path)):
        if not isinstance(function, ast.FunctionDef):
            continue
        for field, node in _assignments(function):
            doc = _statement_doc(node, comments)
            if not doc:
                continue
            docs.setdefault(field, doc)
            for key in _dict_keys(node.value):
                docs.setdefault(f"{field}.{key}", doc)
    return tuple(docs.items())


def field_docs(paths: Iterable[str]) -> dict[str, str]:
    """Field path -> doc from the files at `paths`; the first file that documents a field wins."""
    docs: dict[str, str] = {}
    for path in paths:
        for field, doc in source_docs(path).items():
            docs.setdefault(field, doc)
    return docs


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted field path, value) for every leaf field of `config`, in its order."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def config_sources(config_path: str | None, others: Iterable[str] = ()) -> list[str]:
    """The files whose comments document a config, most authoritative first: `jssl/config.py`,
    the config file, then `others` (the other shipped configs, which document the fields a
    method's recipes share, e.g. DINO's in `dino_mnist.py` for `dino_imagenet.py` too)."""
    paths = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.py")] + ([config_path] if config_path and config_path.endswith(".py") else [])
    return paths + [p for p in others if os.path.abspath(p) not in map(os.path.abspath, paths)]


def args_section(doc: str) -> dict[str, str]:
    """Argument name -> text from a Google-style "Args:" section (`a, b: text` documents both)."""
    out: dict[str, str] = {}
    lines = (doc or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    if not starts:
        return out
    indent, names = None, []
    for line in lines[starts[0] + 1 :]:
        if not line.strip():
            break
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        match = re.match(r"^([\w, ]+):\s*(.*)$", line.strip())
        if depth == indent and match:
            names = [n.strip() for n in match.group(1).split(",") if n.strip()]
            for name in names:  # a shared entry keeps its names: "width, blocks" needs "embed_dim, depth"
                out[name] = match.group(2) if len(names) == 1 else line.strip()
        elif depth > indent and names:
            for name in names:
                out[name] += " " + line.strip()
        else:
            break
    return out


def _backbone_classes(model_name: str) -> list[type]:
    """Every backbone class, the one `model_name` builds first."""
    from jssl.models import audio, autoencoder, resnet, text, unet, vit

    families = [
        (resnet.RESNETS, resnet.ResNet),
        (vit.VITS, vit.VisionTransformer),
        (autoencoder.AUTOENCODERS, autoencoder.ConvEncoder),
        (unet.UNETS, unet.UNet),
        (text.TEXT_MODELS, text.TextTransformer),
        ({k: v for k, v in audio.AUDIO_MODELS.items() if v.get("family") == "wav2vec2"}, audio.Wav2Vec2Encoder),
        ({k: v for k, v in audio.AUDIO_MODELS.items() if v.get("family") == "cpc"}, audio.CPCModel),
    ]
    return [cls for names, cls in families if model_name in names] + [
        cls for names, cls in families if model_name not in names
    ]


def model_kwargs_docs(model_name: str) -> dict[str, str]:
    """`model.kwargs.<arg>` -> doc, from the backbone classes' "Args:" sections."""
    docs: dict[str, str] = {}
    for cls in _backbone_classes(model_name):
        for name, text in args_section(inspect.getdoc(cls) or "").items():
            docs.setdefault(f"model.kwargs.{name}", text)
    return docs


def config_field_docs(config: ml_collections.ConfigDict, config_path: str | None, others: Iterable[str] = ()):
    """Field path -> doc for `config` (loaded from `config_path`): the backbone's argument docs
    for `model.kwargs.*`, then the comments of `config_sources(config_path, others)`."""
    docs = model_kwargs_docs(str(config.get("model", {}).get("name", "")))
    for field, doc in field_docs(config_sources(config_path, others)).items():
        docs.setdefault(field, doc)
    return docs
