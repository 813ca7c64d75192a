"""Which kernels an int8 bundle runs with on this CPU.

An `int8` bundle stores its matrices as MatMulNBits (8-bit blocks, `export/quantize.py`). With int8
dot-product instructions (VNNI, AMX, Arm dot product) ONNX Runtime multiplies them as int8 and wins
over fp32 (bench/engine_bench.py); without them it emulates those instructions and loses at batch
32 and above. There the engine dequantizes the weights to fp32 MatMuls once, at load: the bundle
stays small on disk, the model the same (same rounded weights), the speed that of fp32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

CHOICES = ("auto", "int8", "fp32")


def choose(setting: str, quantization: str, dot_products: str | None = None) -> tuple[str, str]:
    """-> ("int8" | "fp32", why) for a bundle with this quantization under --int8-kernels."""
    if setting not in CHOICES:
        raise ValueError(f"--int8-kernels must be one of {', '.join(CHOICES)}, got {setting!r}")
    if quantization != "int8":
        return "fp32", "unquantized bundle" if quantization == "none" else f"{quantization} bundle"
    if setting != "auto":
        return setting, f"--int8-kernels {setting}"
    if dot_products:
        return "int8", f"int8 MatMulNBits on {dot_products}"
    return "fp32", "weights dequantized to fp32 at load: this CPU has no int8 dot-product instructions"


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers by name, plus the fp32 values of Casts of initializers (export stores large
    tensors in fp16 and casts them back at load)."""
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]].astype(np.float32)
    return values


def nbits_weight(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> np.ndarray:
    """The fp32 (K, N) weight of a symmetric 8-bit MatMulNBits node."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("bits") != 8 or len(node.input) > 3 and any(node.input[3:]):
        raise ValueError(f"{node.name}: only symmetric 8-bit MatMulNBits without bias can be dequantized")
    k, n = attrs["K"], attrs["N"]
    blocks = values[node.input[1]].astype(np.float32) - 128.0  # (N, blocks, block), zero point 128
    scales = values[node.input[2]].astype(np.float32).reshape(n, -1, 1)
    return (blocks * scales).reshape(n, -1)[:, :k].T.copy()


def replace_nodes(graph: onnx.GraphProto, nodes: list, initializers: list) -> None:
    """Give the graph these nodes and added initializers; drop what nothing reads any more."""
    used = {i for node in nodes for i in node.input}
    nodes = [n for n in nodes if n.op_type != "Cast" or any(o in used for o in n.output)]
    used = {i for node in nodes for i in node.input}
    keep = [i for i in graph.initializer if i.name in used] + initializers
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep)


def dequantize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every 8-bit MatMulNBits by a MatMul over its dequantized fp32 weights."""
    graph = model.graph
    values = constants(graph)
    nodes, added = [], []
    for node in graph.node:
        if node.op_type != "MatMulNBits":
            nodes.append(node)
            continue
        name = node.input[1] + "_fp32"
        added.append(numpy_helper.from_array(nbits_weight(node, values), name))
        nodes.append(helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name + "_fp32"))
    replace_nodes(graph, nodes, added)
    return model
