"""The encoder as an ONNX graph written node by node: ONNX's own bidirectional GRU/LSTM with
`sequence_lens`, instead of what tracing the PyTorch encoder gives.

Traced, the unpacked encoder (`training.encoders`, packed sequences do not export) became two
unidirectional RNN nodes, the backward one fed each sentence reversed within its length by gather
indices, and some 150 shape and index nodes around them: at one sentence those cost about as much
as the recurrences themselves. ONNX's RNN ops take the lengths directly (each direction runs over a
sentence's own tokens, zeros beyond them, as packed sequences do in training), so the graph is the
embedding, one RNN node per layer, the key projection and the decoder's initial state.

src_ids int64 (B, S), src_lengths int64 (B,) -> memory (B, S, M), keys (B, S, A), mask bool (B, S),
hidden (B, H), feed (B, O) [, cell (B, H)]: the outputs of `Seq2Seq.encode`, in the same order.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from training.model import Seq2Seq

# PyTorch stacks gate weights as (r, z, n) for GRU and (i, f, g, o) for LSTM; ONNX as (z, r, h)
# and (i, o, f, c).
GATE_ORDER = {"gru": (1, 0, 2), "lstm": (0, 3, 1, 2)}


def _gates(weight: np.ndarray, rnn_type: str) -> np.ndarray:
    parts = np.split(weight, len(GATE_ORDER[rnn_type]), axis=0)
    return np.concatenate([parts[i] for i in GATE_ORDER[rnn_type]], axis=0)


def _rnn_weights(forward: torch.nn.Module, backward: torch.nn.Module, rnn_type: str):
    """W (2, G*H, in), R (2, G*H, H), B (2, 2*G*H) of one layer, forward direction first."""
    def get(rnn, name):
        return getattr(rnn, name).detach().float().numpy()
    W = np.stack([_gates(get(r, "weight_ih_l0"), rnn_type) for r in (forward, backward)])
    R = np.stack([_gates(get(r, "weight_hh_l0"), rnn_type) for r in (forward, backward)])
    B = np.stack([np.concatenate([_gates(get(r, "bias_ih_l0"), rnn_type), _gates(get(r, "bias_hh_l0"), rnn_type)])
                  for r in (forward, backward)])
    return W, R, B


def encoder_model(model: Seq2Seq, opset: int) -> onnx.ModelProto:
    cfg = model.cfg
    rnn_type, H = cfg.rnn_type, cfg.encoder_hidden
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, array) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x: str, layer: torch.nn.Linear, name: str) -> str:
        weight = const(f"{name}.weight_t", layer.weight.detach().float().numpy().T.copy())
        y = node("MatMul", [x, weight], f"{name}/MatMul")
        if layer.bias is not None:
            y = node("Add", [y, const(f"{name}.bias", layer.bias.detach().float().numpy())], f"{name}/Add")
        return y

    emb = node("Gather", [const("src_embed.weight", model.src_embed.weight.detach().float().numpy()), "src_ids"],
               "/src_embed/Gather")
    x = node("Transpose", [emb], "/encoder/time_major", perm=[1, 0, 2])  # (S, B, E)
    lengths = node("Cast", ["src_lengths"], "/encoder/lengths_int32", to=TensorProto.INT32)
    last_h = ""
    for layer, (fwd, bwd) in enumerate(zip(model.encoder.forward_rnns, model.encoder.backward_rnns)):
        W, R, B = _rnn_weights(fwd, bwd, rnn_type)
        prefix = f"/encoder/layer{layer}"
        outputs = [f"{prefix}/Y", f"{prefix}/Y_h"]
        nodes.append(helper.make_node(
            rnn_type.upper(), [x, const(f"{prefix}.W", W), const(f"{prefix}.R", R), const(f"{prefix}.B", B), lengths],
            outputs, name=f"{prefix}/{rnn_type.upper()}", direction="bidirectional", hidden_size=H,
            **({"linear_before_reset": 1} if rnn_type == "gru" else {})))
        # Y (S, 2, B, H) -> (S, B, 2H): both directions side by side, forward first
        y = node("Transpose", [outputs[0]], f"{prefix}/Y_t", perm=[0, 2, 1, 3])
        x = node("Reshape", [y, const(f"{prefix}.shape", np.array([0, 0, 2 * H], np.int64))], f"{prefix}/out")
        last_h = outputs[1]
    memory = node("Transpose", [x], "memory", perm=[1, 0, 2])
    # Y_h (2, B, H): the forward state after each sentence's last token, the backward after its first
    final = node("Reshape", [node("Transpose", [last_h], "/encoder/final_t", perm=[1, 0, 2]),
                             const("/encoder/final_shape", np.array([0, 2 * H], np.int64))], "/encoder/final")
    key_layer = getattr(model.decoder.attention, "key_layer", None)
    if key_layer is not None:
        node("Identity", [linear(memory, key_layer, "/decoder/attention/key_layer")], "keys")
    else:  # dot attention: the memory itself
        node("Identity", [memory], "keys")
    positions = node("Range", [const("/mask/zero", np.array(0, np.int64)),
                               node("Gather", [node("Shape", ["src_ids"], "/mask/shape"),
                                               const("/mask/one", np.array(1, np.int64))], "/mask/width"),
                               "/mask/one"], "/mask/positions")
    node("Less", [node("Unsqueeze", [positions, const("/mask/axis0", np.array([0], np.int64))], "/mask/row"),
                  node("Unsqueeze", ["src_lengths", const("/mask/axis1", np.array([1], np.int64))], "/mask/col")],
         "mask")
    node("Tanh", [linear(final, model.decoder.bridge, "/decoder/bridge")], "hidden")
    batch = node("Gather", [node("Shape", ["src_ids"], "/state/shape"), const("/state/zero", np.array([0], np.int64))],
                 "/state/batch")
    feed_shape = node("Concat", [batch, const("/state/feed_size", np.array([cfg.output_size], np.int64))],
                      "/state/feed_shape", axis=0)
    node("ConstantOfShape", [feed_shape], "feed", value=numpy_helper.from_array(np.zeros(1, np.float32)))
    keys_size = key_layer.out_features if key_layer is not None else 2 * H
    outputs = [("memory", ["batch", "src_len", 2 * H]), ("keys", ["batch", "src_len", keys_size]),
               ("mask", ["batch", "src_len"]), ("hidden", ["batch", cfg.decoder_hidden]),
               ("feed", ["batch", cfg.output_size])]
    if rnn_type == "lstm":
        cell_shape = node("Concat", [batch, const("/state/cell_size", np.array([cfg.decoder_hidden], np.int64))],
                          "/state/cell_shape", axis=0)
        node("ConstantOfShape", [cell_shape], "cell", value=numpy_helper.from_array(np.zeros(1, np.float32)))
        outputs.append(("cell", ["batch", cfg.decoder_hidden]))
    graph = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info("src_ids", TensorProto.INT64, ["batch", "src_len"]),
         helper.make_tensor_value_info("src_lengths", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info(n, TensorProto.BOOL if n == "mask" else TensorProto.FLOAT, shape)
         for n, shape in outputs],
        inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                   producer_name="export.encoder_graph")
    onnx.checker.check_model(onnx_model)
    return onnx_model
