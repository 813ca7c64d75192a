"""The decoder graph with a shortlisted output layer, derived at load time from a bundle's decoder.

The output projection `logits = h W^T + b` becomes `h W_c^T + b_c + mask` with three new inputs:
`vocab_weight` (C, O) and `vocab_bias` (C,), the rows of W and b of the batch's candidate tokens
(the union of its sentences' shortlists, `nmt/shortlist.py`), and `vocab_mask` (N, C), 0 where a row
may produce the candidate and -inf where only other sentences may: every row is normalised over its
own shortlist, whatever its company. TopK then returns positions among the C candidates.
The full-vocabulary graph stays untouched, for requests that turn the shortlist off.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from service.int8 import constants, nbits_weight, replace_nodes

def _const(values: dict, name: str) -> np.ndarray:
    if name not in values:
        raise ValueError(f"the output layer's {name!r} is not a constant")
    return values[name].astype(np.float32)


def shortlist_decoder(model: onnx.ModelProto) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """-> (graph with the shortlist inputs, W (V, O) fp32, b (V,) fp32)."""
    graph = model.graph
    values = constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    [softmax] = [n for n in graph.node if n.op_type == "LogSoftmax"]
    logits = softmax.input[0]
    out = producer[logits]
    removed = [out]
    if out.op_type == "Gemm":  # fp32 export: Gemm(h, W, b, transB=1)
        attrs = {a.name: helper.get_attribute_value(a) for a in out.attribute}
        hidden, weight, bias = out.input[0], _const(values, out.input[1]), _const(values, out.input[2])
        if not attrs.get("transB", 0):
            weight = weight.T
    elif out.op_type == "Add":  # int8 export: Add(MatMulNBits(h, Wq, scales), b)
        matmul_out, bias_name = out.input if out.input[0] in producer else out.input[::-1]
        matmul = producer[matmul_out]
        removed.append(matmul)
        bias = _const(values, bias_name)
        hidden = matmul.input[0]
        weight = nbits_weight(matmul, values).T if matmul.op_type == "MatMulNBits" \
            else _const(values, matmul.input[1]).T
    else:
        raise ValueError(f"unexpected output layer {out.op_type} before LogSoftmax")
    nodes = []
    for node in graph.node:
        if any(node is r for r in removed):
            if node is out:
                nodes += [helper.make_node("Gemm", [hidden, "vocab_weight", "vocab_bias"], ["vocab_logits"],
                                           transB=1, name="shortlist_gemm"),
                          helper.make_node("Add", ["vocab_logits", "vocab_mask"], [logits], name="shortlist_mask")]
            continue
        nodes.append(node)
    replace_nodes(graph, nodes, [])
    graph.input.extend([
        helper.make_tensor_value_info("vocab_weight", TensorProto.FLOAT, ["candidates", weight.shape[1]]),
        helper.make_tensor_value_info("vocab_bias", TensorProto.FLOAT, ["candidates"]),
        helper.make_tensor_value_info("vocab_mask", TensorProto.FLOAT, ["rows", "candidates"])])
    return model, np.ascontiguousarray(weight), np.ascontiguousarray(bias)
