"""The previous token's share of the decoder's matmuls, looked up instead of multiplied.

A decoder step multiplies the previous token's embedding by two weight matrices: the RNN's input
weights (beside the attentional vector, input feeding) and the output layer's (beside the RNN state
and the context: Luong's h~ with the embedding). The embedding is one of V rows, so its product
with those weights, bias included, is one of V rows too. The engine computes these tables once, at
load, and a step gathers one row per hypothesis instead of reading the weights and multiplying:
for the demo model 2 MB of the 21 MB of weights a fp32 step reads, and 7% of its multiply-adds
(bench/engine_bench.py measures the effect). The price is memory, V x outputs floats (35 MB for the
demo model); a graph whose tables would exceed the budget (`--embedding-tables-mb`) is left as it is.

Works on the decoder as exported (Gemm), as dequantized at load (MatMul + Add) and as int8
(MatMulNBits + Add, when the embedding's columns are whole quantization blocks). The embedding may
itself be computed (an int8 bundle stores it quantized): the part of the graph that depends on the
previous token alone is evaluated once for every token. Without input feeding the RNN's input is
the embedding alone, and its whole product (the gates' share) becomes a table.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from service.int8 import constants, nbits_weight, replace_nodes

TOKEN = "prev_ids"


def fold_embedding(model: onnx.ModelProto, vocab_size: int, budget_bytes: int) -> int:
    """Rewrite the decoder `model` in place; return the bytes of the tables added (0: unchanged)."""
    graph = model.graph
    if budget_bytes <= 0 or TOKEN not in {i.name for i in graph.input}:
        return 0
    values = constants(graph)
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    token_only = _token_only(graph, values)
    producer = {o: n for n in graph.node for o in n.output}
    folds = []  # (token-only tensor, concat or None, linear): products of the embedding and more
    whole = {}  # token-only tensor -> the products it comes from: the embedding alone multiplied
    for name in token_only:
        outside = [r for r in readers.get(name, []) if r.output[0] not in token_only]
        if not outside:
            continue
        made = _products_behind(name, producer, set(token_only), readers, values)
        if made:
            whole[name] = made
            continue
        for reader in outside:
            concat = reader if reader.op_type == "Concat" and len(readers[reader.output[0]]) == 1 else None
            linear = _linear(readers[reader.output[0]][0] if concat else reader, readers, values)
            if linear is not None and linear["input"] == (concat.output[0] if concat else name):
                folds.append((name, concat, linear))
    linears = [f[-1] for f in folds] + list({id(lin["nodes"][0]): lin for m in whole.values() for lin in m}.values())
    if not linears or sum(vocab_size * lin["weight"].shape[1] * 4 for lin in linears) > budget_bytes:
        return 0
    tokens = _evaluate(graph, model.opset_import, sorted({f[0] for f in folds} | set(whole)), vocab_size)
    replaced: dict[int, list[onnx.NodeProto]] = {}  # id of the node whose place the new nodes take
    removed, added = set(), []
    for name in whole:  # looked up where it was computed; what computed it is left to nobody
        table = numpy_helper.from_array(tokens[name], f"{name}/table")
        replaced.setdefault(id(producer[name]), []).append(
            helper.make_node("Gather", [table.name, TOKEN], [name], name=table.name))
        removed.add(id(producer[name]))
        added.append(table)
    for name, concat, linear in folds:
        new, tables = _folded(name, concat, linear, tokens[name])
        if new is None:
            continue
        replaced[id(linear["nodes"][-1])] = new  # after everything the rest of the inputs need
        removed.update(id(n) for n in linear["nodes"] + ([concat] if concat is not None else []))
        added += tables
    if not added:
        return 0
    nodes = []
    for node in graph.node:
        if id(node) in replaced:
            nodes += replaced[id(node)]
        elif id(node) not in removed:
            nodes.append(node)
    replace_nodes(graph, _live(graph, nodes), added)
    onnx.checker.check_model(model)
    return sum(int(np.prod(t.dims)) * 4 for t in added if t.name.endswith("/table"))


def _token_only(graph: onnx.GraphProto, values: dict) -> list[str]:
    """Tensors computed from the previous token and constants alone (the embedding and its parts)."""
    known, found = {TOKEN} | set(values), {TOKEN}
    order = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if all(i in known for i in inputs):
            known.update(node.output)  # constants, and what is computed from them and the token
            if any(i in found for i in inputs):
                found.update(node.output)
                order += list(node.output)
    return order


def _products_behind(name: str, producer: dict, token_only: set, readers: dict, values: dict) -> list[dict]:
    """The linear nodes among what computes token-only `name` from the token (none for a plain
    embedding lookup, which is a table already)."""
    found, todo, seen = [], [name], set()
    while todo:
        node = producer.get(todo.pop())
        if node is None or id(node) in seen or not set(node.output) <= token_only:
            continue
        seen.add(id(node))
        linear = _linear(node, readers, values)
        if linear is not None:
            found.append(linear)
        todo += [i for i in node.input if i in token_only]
    return found


def _linear(node: onnx.NodeProto, readers: dict, values: dict) -> dict | None:
    """A node that multiplies its first input by a constant weight, with the bias that follows it:
    {"nodes", "input", "output", "weight" (K, N) fp32, "bias" (N,), "kind", ...}; None otherwise."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm":
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 \
                or node.input[1] not in values or (len(node.input) > 2 and node.input[2] not in values):
            return None
        weight = values[node.input[1]].astype(np.float32)
        weight = weight.T if attrs.get("transB", 0) else weight
        bias = values[node.input[2]].astype(np.float32) if len(node.input) > 2 and node.input[2] else None
        if bias is not None and bias.shape != (weight.shape[1],):
            return None
        return {"nodes": [node], "input": node.input[0], "output": node.output[0], "weight": weight,
                "bias": bias, "kind": "fp32"}
    if node.op_type == "MatMul" and node.input[1] in values:
        weight, kind, extra = values[node.input[1]].astype(np.float32), "fp32", {}
    elif node.op_type == "MatMulNBits" and len([i for i in node.input if i]) == 3:
        try:
            weight = nbits_weight(node, values)
        except ValueError:
            return None
        kind, extra = "int8", {"attrs": attrs, "q8": values[node.input[1]], "scales": values[node.input[2]]}
    else:
        return None
    if weight.ndim != 2:
        return None
    nodes, output, bias = [node], node.output[0], None
    after = readers.get(output, [])
    if len(after) == 1 and after[0].op_type == "Add":
        add = after[0]
        other = add.input[1] if add.input[0] == output else add.input[0]
        if other in values and values[other].shape == (weight.shape[1],):
            nodes, output, bias = [node, add], add.output[0], values[other].astype(np.float32)
    return {"nodes": nodes, "input": node.input[0], "output": output, "weight": weight, "bias": bias,
            "kind": kind, **extra}


def _evaluate(graph: onnx.GraphProto, opsets, names: list[str], vocab_size: int) -> dict[str, np.ndarray]:
    """The token-only tensors `names` for every token id 0..V-1, by running their part of the graph."""
    needed, nodes = set(names), []
    for node in reversed(graph.node):
        if needed & set(node.output):
            nodes.insert(0, node)
            needed.update(i for i in node.input if i)
    inputs = [helper.make_tensor_value_info(TOKEN, TensorProto.INT64, ["tokens"])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names]
    inits = [i for i in graph.initializer if i.name in needed]
    sub = helper.make_graph(nodes, "embedding", inputs, outputs, inits)
    model = helper.make_model(sub, opset_imports=list(opsets))
    result = ReferenceEvaluator(model).run(names, {TOKEN: np.arange(vocab_size, dtype=np.int64)})
    return dict(zip(names, (np.asarray(r, np.float32) for r in result)))


def _folded(name: str, concat: onnx.NodeProto | None, linear: dict, embedding: np.ndarray):
    """The nodes that replace concat + linear, and their new initializers; (None, []) when the
    embedding's columns cannot be cut out of this linear node's weight."""
    parts = list(concat.input) if concat is not None else [name]
    if parts.count(name) != 1 or embedding.ndim != 2:
        return None, []
    width = embedding.shape[1]
    weight = linear["weight"]
    index = parts.index(name)
    if index == 0:
        start = 0
    elif index == len(parts) - 1:
        start = weight.shape[0] - width
    else:  # the other parts' widths are not known without shapes: only an end is cut
        return None, []
    if concat is not None and {a.name: a.i for a in concat.attribute}.get("axis") not in (-1, 1):
        return None, []
    rows = np.r_[0:start, start + width:weight.shape[0]]
    if linear["kind"] == "int8":
        block = linear["attrs"]["block_size"]
        if start % block or width % block:
            return None, []
    out = linear["output"]
    table = embedding @ weight[start:start + width]
    if linear["bias"] is not None:
        table += linear["bias"]
    prefix = linear["nodes"][0].name or out
    tables = [numpy_helper.from_array(table.astype(np.float32), f"{prefix}/table")]
    gathered = f"{out}_table"
    rest = [p for p in parts if p != name]
    if not rest:  # no other input: the table is the whole product
        return [helper.make_node("Gather", [tables[0].name, TOKEN], [out], name=f"{prefix}/table")], tables
    nodes = [helper.make_node("Gather", [tables[0].name, TOKEN], [gathered], name=f"{prefix}/table")]
    x = rest[0]
    if len(rest) > 1:
        x = f"{concat.output[0]}_rest"
        nodes.append(helper.make_node("Concat", rest, [x], axis=-1, name=f"{concat.name}_rest"))
    if linear["kind"] == "fp32":
        kept = numpy_helper.from_array(np.ascontiguousarray(weight[rows].T), f"{prefix}/rest_weight")
        tables.append(kept)
        nodes.append(helper.make_node("Gemm", [x, kept.name, gathered], [out], transB=1, name=prefix))
        return nodes, tables
    rest_node, rest_weights = _nbits_rest(linear, x, f"{out}_rest", start // block, width // block, prefix)
    nodes.append(rest_node)
    tables += rest_weights
    nodes.append(helper.make_node("Add", [f"{out}_rest", gathered], [out], name=f"{prefix}/add_table"))
    return nodes, tables


def _nbits_rest(linear: dict, x: str, out: str, first: int, count: int, prefix: str):
    """The int8 MatMulNBits without the embedding's blocks of K (whole blocks: the rest stays exact),
    and its weights."""
    attrs, quantized, scales = linear["attrs"], linear["q8"], linear["scales"]
    keep = np.r_[0:first, first + count:quantized.shape[1]]
    q = numpy_helper.from_array(np.ascontiguousarray(quantized[:, keep]), f"{prefix}/rest_q8")
    s = numpy_helper.from_array(np.ascontiguousarray(scales.reshape(quantized.shape[0], -1)[:, keep].reshape(-1)),
                                f"{prefix}/rest_scales")
    k = attrs["K"] - count * attrs["block_size"]
    node = helper.make_node("MatMulNBits", [x, q.name, s.name], [out], domain="com.microsoft",
                            name=f"{prefix}/rest", **{**attrs, "K": k})
    return node, [q, s]


def _live(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Nodes whose outputs something still reads (the graph's outputs or a live node)."""
    while True:
        used = {o.name for o in graph.output} | {i for n in nodes for i in n.input}
        live = [n for n in nodes if any(o in used for o in n.output)]
        if len(live) == len(nodes):
            return nodes
        nodes = live
