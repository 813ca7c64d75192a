"""MatMuls by a one-column constant weight, run as Einsum.

The additive attention scores every source position as v^T tanh(W q + U m): a MatMul of
(rows, source positions, 512) by v, a (512, 1) weight. ONNX Runtime's MatMul packs a weight into
panels of many columns and multiplies every column of the panel, so one column costs about what a
full panel does; its Einsum over the same operands sums along the shared axis instead. Measured
with ONNX Runtime's profiler (`bench/step_profile.py`, which times both forms in one run): the
scoring node is faster from 32 rows up and a few microseconds slower at 1 row, where it is tiny
either way. The product is the same up to the order of its additions: fp32 translations
come out identical; an int8 bundle quantizes the activations downstream, so a rare one changes.
"""

from __future__ import annotations

import onnx
from onnx import helper

from service.int8 import constants


def one_column_matmuls_as_einsum(model: onnx.ModelProto) -> int:
    """Rewrite the graph in place; return how many MatMuls became Einsums."""
    graph = model.graph
    values = constants(graph)
    count = 0
    for node in graph.node:
        weight = values.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and weight.ndim == 2 and weight.shape[1] == 1:
            node.CopyFrom(helper.make_node("Einsum", list(node.input), list(node.output), name=node.name,
                                           equation="...h,hk->...k"))
            count += 1
    return count
