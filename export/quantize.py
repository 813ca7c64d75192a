"""Quantized bundles.

- int8-dynamic: onnxruntime's `quantize_dynamic` (MatMul/Gemm/Gather weights int8, activations
  quantized at run time with ONE scale for the whole batch tensor, so a sentence's output depends on
  the other sentences in its batch);
- int8: 8-bit block quantization of the weights of every MatMul and Gemm (rewritten as MatMul + Add)
  into MatMulNBits (blocks of 32), small weights (under 4,096 values) excepted. accuracy_level 4
  lets ONNX Runtime quantize activations too, but per row and block, never across rows, so outputs
  do not depend on the batch; it is also the fast path (accuracy_level 0 dequantizes the weights at
  every call and ran 10x slower than fp32 here).
  Embedding tables become int8 with one scale per row (Gather the row, Cast, multiply by its
  scale): exact per token, so batch-invariant too. The encoder's GRU weights stay in fp16 storage.
"""

from __future__ import annotations

from pathlib import Path

MODES = ("int8", "int8-dynamic")


def apply(path: Path, mode: str) -> None:
    import logging

    import onnx

    # the quantizer logs one INFO line per graph node ("skip to quantize ..."): hundreds of lines
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    for name in ("onnxruntime.quantization.matmul_nbits_quantizer",):
        logging.getLogger(name).setLevel(logging.WARNING)

    if mode == "int8-dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(path), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Gather"])
        return
    if mode == "int8":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = quantize_embeddings(gemm_to_matmul(onnx.load(str(path))))
        quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=32, is_symmetric=True,
                                         accuracy_level=4, op_types_to_quantize=("MatMul",),
                                         nodes_to_exclude=small_matmuls(model))
        quantizer.process()
        quantizer.model.save_model_to_file(str(path), use_external_data_format=False)
        return
    raise ValueError(f"unknown quantization {mode!r}; choose from {', '.join(MODES)}")


def gemm_to_matmul(model):
    """Rewrite Gemm(A, W, b) with a constant W as MatMul(A, W') + b, which MatMulNBits quantizes."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = node.input[1] + "_kn"
        graph.initializer.append(numpy_helper.from_array(weight.copy(), w_name))
        product = node.output[0] + "_matmul" if len(node.input) > 2 else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [product], name=node.name + "_matmul"))
        if len(node.input) > 2:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_bias"))
    return _with_nodes(model, nodes)


def small_matmuls(model, min_elements: int = 4096) -> list[str]:
    """MatMuls whose constant weight is small: nothing to save by quantizing it, and MatMulNBits
    quantizes every activation row first, which for the additive attention's energy layer (512 x 1,
    over rows x source positions) cost more than the rest of the attention (bench/step_profile.py)."""
    import numpy as np

    inits = {i.name: i for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits
            and int(np.prod(inits[n.input[1]].dims)) < min_elements]


def quantize_embeddings(model, min_elements: int = 4096):
    """Gather(table, ids) over a float table -> Gather(int8 table) * Gather(row scales):
    symmetric int8 per row, a quarter of the fp32 size."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or table.data_type != TensorProto.FLOAT or int(np.prod(table.dims)) < min_elements:
            nodes.append(node)
            continue
        weights = numpy_helper.to_array(table)
        scale = np.maximum(np.abs(weights).max(axis=1, keepdims=True), 1e-12) / 127.0
        q = np.clip(np.round(weights / scale), -127, 127).astype(np.int8)
        name = table.name
        graph.initializer.extend([numpy_helper.from_array(q, name + "_int8"),
                                  numpy_helper.from_array(scale.astype(np.float32), name + "_scale")])
        out = node.output[0]
        nodes += [
            helper.make_node("Gather", [name + "_int8", node.input[1]], [out + "_q"], name=node.name + "_q"),
            helper.make_node("Cast", [out + "_q"], [out + "_f"], to=TensorProto.FLOAT, name=node.name + "_cast"),
            helper.make_node("Gather", [name + "_scale", node.input[1]], [out + "_s"], name=node.name + "_s"),
            helper.make_node("Mul", [out + "_f", out + "_s"], [out], name=node.name + "_dequant"),
        ]
    return _with_nodes(model, nodes)


def _with_nodes(model, nodes):
    """Give the graph these nodes, drop the initializers nothing reads any more, check it."""
    import onnx

    from service.int8 import replace_nodes

    replace_nodes(model.graph, nodes, [])
    onnx.checker.check_model(model)
    return model
