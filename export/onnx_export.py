"""Export a trained model to two ONNX graphs: the encoder and one decoder step.

encoder.onnx  src_ids int64 (B,S), src_lengths int64 (B,)
              -> memory (B,S,M), keys (B,S,A), mask bool (B,S), hidden (B,H), feed (B,O) [, cell (B,H)]
decoder.onnx  prev_ids int64 (N,), k int64 (1,), hidden, feed [, cell], memory, keys, mask
              -> top_log_probs (N,k), top_ids int64 (N,k), attention (N,S), hidden_out, feed_out [, cell_out]

The decoder ends in a TopK node with k as an input: the search needs the k best tokens per row,
and sorting the whole vocabulary in numpy would cost as much as the step itself.
Batch (B, N) and source length (S) are dynamic; batch is axis 0 of every state tensor.
The decoder step is traced from PyTorch; the encoder is written node by node (`encoder_graph`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from export.encoder_graph import encoder_model
from training.model import Seq2Seq
from training.onnx_names import decoder_state_names

OPSET = 18


class DecoderGraph(torch.nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model
        self.names = decoder_state(model)

    def forward(self, prev_ids, *tensors):
        state = dict(zip(self.names + ["memory", "keys", "mask"], tensors))
        log_probs, attention, new = self.model.decode_step(prev_ids, state)
        return (log_probs, attention) + tuple(new[name] for name in self.names)


def decoder_state(model: Seq2Seq) -> list[str]:
    return decoder_state_names(model.cfg.to_dict())


def _export(module, args, path: Path, input_names, output_names, dynamic_axes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)


def export_graphs(model: Seq2Seq, out_dir: Path) -> dict[str, Path]:
    """Write encoder.onnx and decoder.onnx (fp32) into out_dir; return their paths."""
    model = model.eval().float()
    out_dir.mkdir(parents=True, exist_ok=True)
    src = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    lengths = torch.tensor([5, 3])
    paths = {"encoder": out_dir / "encoder.onnx", "decoder": out_dir / "decoder.onnx"}
    onnx.save(encoder_model(model, OPSET), str(paths["encoder"]))
    with torch.no_grad():
        state = model.encode(src, lengths, packed=False)
        names = decoder_state(model)
        inputs = ["prev_ids"] + names + ["memory", "keys", "mask"]
        args = (torch.tensor([2, 2]),) + tuple(state[n] for n in names + ["memory", "keys", "mask"])
        rows = {0: "rows"}
        dec_axes = {"prev_ids": rows, **{n: rows for n in names},
                    **{n: {0: "rows", 1: "src_len"} for n in ("memory", "keys", "mask")},
                    "log_probs": rows, "attention": {0: "rows", 1: "src_len"},
                    **{f"{n}_out": rows for n in names}}
        _export(DecoderGraph(model), args, paths["decoder"], inputs,
                ["log_probs", "attention"] + [f"{n}_out" for n in names], dec_axes)
    add_topk(paths["decoder"])
    return paths


def add_topk(path: Path) -> None:
    """Replace the decoder's log_probs output by TopK(log_probs, k) with k as a new input."""
    model = onnx.load(str(path))
    graph = model.graph
    graph.input.insert(1, helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
    graph.node.append(helper.make_node("TopK", ["log_probs", "k"], ["top_log_probs", "top_ids"],
                                       axis=-1, largest=1, sorted=1, name="topk"))
    outputs = [o for o in graph.output if o.name != "log_probs"]
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("top_log_probs", TensorProto.FLOAT, ["rows", "k"]),
                         helper.make_tensor_value_info("top_ids", TensorProto.INT64, ["rows", "k"])])
    graph.output.extend(outputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


HALF_MIN_ELEMENTS = 4096  # smaller initializers (biases, norms) stay fp32


def store_half(path: Path, min_elements: int = HALF_MIN_ELEMENTS) -> None:
    """Store large float initializers in half precision, cast back to fp32 when the session loads
    (ONNX Runtime folds the Cast once): half the file size, fp32 arithmetic."""
    model = onnx.load(str(path))
    graph = model.graph
    casts, keep = [], []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and int(np.prod(init.dims)) >= min_elements:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
            keep.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "_to_fp32"))
        else:
            keep.append(init)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
