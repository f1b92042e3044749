"""XLA's view of a step's FLOPs by layer kind: the dots of the lowered HLO, attributed by source.

`lowered.as_text(dialect="hlo", debug_info=True)` gives every instruction a `stack_frame_id`
whose innermost frame names the Python function and line that emitted it. Each `dot` is
counted as `2 x output elements x contracted size` and attributed to:

  * `attention_proj`: `MultiHeadSelfAttention.__call__` outside the attention call (q/k/v and
    output projections);
  * `attention_n2`: the line calling `dot_product_attention` (`Q K^T`, `softmax V`), plus cuDNN
    fused-attention custom calls where JAX lowers to them on a GPU (XLA's cost analysis does
    not count those; they are estimated here as 4 b h t s k forward and 8 b h t s k backward);
  * `mlp`: `MLP.__call__`; `patch_embed`: `PatchEmbed.__call__`;
  * `other_dots`: everything else that multiplies matrices (heads, probe, MAE's decoder
    embedding and prediction, position-embedding resizes).

`elementwise` is XLA's total (cost analysis of the same lowered module) minus all dots:
LayerNorm, GELU, softmax, loss, optimizer. Pre-optimization HLO is the same on every backend
(bar the cuDNN calls), so a CPU run already shows what a GPU step computes. The function names
are the jssl Transformer's; a renamed module falls into `other_dots`.
"""

from __future__ import annotations

import collections
import linecache
import math
import re
from typing import Any

CATEGORIES = ("attention_proj", "attention_n2", "mlp", "patch_embed", "other_dots", "elementwise")
_DEF = re.compile(r"^\s*(?:ROOT\s+)?([\w.\-]+) = (\w+)\[([\d,]*)\]")
_DOT = re.compile(r"= \w+\[([\d,]*)\]\S* dot\(([\w.\-]+), ([\w.\-]+)\)(.*)$")
_CUSTOM = re.compile(r"custom-call\(([^)]*)\).*custom_call_target=\"([^\"]+)\"")
_SECTION_ROW = re.compile(r"^(\d+) (.*)$")


def _sections(text: str) -> dict[str, dict[int, str]]:
    """The debug-info tables (FileNames, FunctionNames, FileLocations, StackFrames): id -> row."""
    tables: dict[str, dict[int, str]] = {}
    current = None
    for line in text.splitlines():
        if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            current = tables.setdefault(line, {})
            continue
        m = _SECTION_ROW.match(line) if current is not None else None
        if m:
            current[int(m.group(1))] = m.group(2)
        elif current is not None and line.strip() == "":
            current = None
    return tables


def _field(row: str, name: str) -> int:
    m = re.search(rf"{name}=(\d+)", row)
    return int(m.group(1)) if m else 0


def _frame_source(tables: dict[str, dict[int, str]], frame_id: int) -> tuple[str, str, int]:
    """(function, file, line) of a stack frame's innermost location."""
    frame = tables.get("StackFrames", {}).get(frame_id, "")
    loc = tables.get("FileLocations", {}).get(_field(frame, "file_location_id"), "")
    function = tables.get("FunctionNames", {}).get(_field(loc, "function_name_id"), "").strip('"')
    file = tables.get("FileNames", {}).get(_field(loc, "file_name_id"), "").strip('"')
    return function, file, _field(loc, "line")


def _category(function: str, file: str, line: int) -> str:
    if function.endswith("MultiHeadSelfAttention.__call__"):
        return "attention_n2" if "dot_product_attention" in linecache.getline(file, line) else "attention_proj"
    if function.endswith("MLP.__call__"):
        return "mlp"
    if function.endswith("PatchEmbed.__call__"):
        return "patch_embed"
    return "other_dots"


def _dims(spec: str) -> list[int]:
    return [int(d) for d in spec.split(",") if d]


def dot_flops_by_category(hlo_text: str) -> tuple[dict[str, float], int, float]:
    """FLOPs of every dot (and cuDNN attention call) by category, the number of such calls and
    their estimated FLOPs (already inside `attention_n2`)."""
    shapes = {m.group(1): _dims(m.group(3)) for m in map(_DEF.match, hlo_text.splitlines()) if m}
    tables = _sections(hlo_text)
    out: dict[str, float] = collections.defaultdict(float)
    custom_calls, custom_flops = 0, 0.0
    for line in hlo_text.splitlines():
        frame = re.search(r"stack_frame_id=(\d+)", line)
        source = _frame_source(tables, int(frame.group(1))) if frame else ("", "", 0)
        dot = _DOT.search(line)
        if dot:
            lhs = shapes.get(dot.group(2), [])
            contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", dot.group(4))
            size = math.prod(lhs[i] for i in _dims(contracting.group(1))) if contracting and lhs else 0
            out[_category(*source)] += 2.0 * math.prod(_dims(dot.group(1))) * size
            continue
        custom = _CUSTOM.search(line)
        if custom and "fmha" in custom.group(2).lower():
            operands = [o.strip().split()[-1] for o in custom.group(1).split(",") if o.strip()]
            q, k = (shapes.get(o, []) for o in operands[:2])
            if len(q) == 4 and len(k) == 4:  # [batch, tokens, heads, head_dim]
                per = 2.0 * q[0] * q[2] * q[1] * k[1] * q[3]
                flops = per * (4 if "backward" in custom.group(2).lower() else 2)
                out["attention_n2"] += flops
                custom_calls += 1
                custom_flops += flops
    return dict(out), custom_calls, custom_flops


def breakdown(lowered: Any) -> dict[str, float]:
    """`hlo_<category>_flops` and `hlo_<category>_share` of a lowered step, plus the number of
    fused-attention custom calls (`hlo_attention_custom_calls`)."""
    from benchmarks.flops import xla_flops

    dots, custom_calls, custom_flops = dot_flops_by_category(lowered.as_text(dialect="hlo", debug_info=True))
    # The cost analysis leaves custom calls out: add the estimate so the remainder stays elementwise.
    total = (xla_flops(lowered) or 0.0) + custom_flops
    dots["elementwise"] = max(total - sum(dots.values()), 0.0)
    grand = sum(dots.values()) or 1.0
    out = {f"hlo_{k}_flops": dots.get(k, 0.0) for k in CATEGORIES}
    out.update({f"hlo_{k}_share": dots.get(k, 0.0) / grand for k in CATEGORIES})
    out["hlo_attention_custom_calls"] = custom_calls
    return out
