"""Quantized bundles.

- int8-dynamic: onnxruntime's `quantize_dynamic` (MatMul/Gemm/Gather weights int8, activations
  quantized at run time with ONE scale for the whole batch tensor, so a sentence's output depends on
  the other sentences in its batch);
- int8: weight-only 8-bit block quantization (MatMulNBits), activations stay fp32 per row, so
  outputs do not depend on the batch.
"""

from __future__ import annotations

from pathlib import Path

MODES = ("int8", "int8-dynamic")


def apply(path: Path, mode: str) -> None:
    import onnx

    if mode == "int8-dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(path), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gemm", "Gather"])
        return
    if mode == "int8":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(path))
        quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=32, is_symmetric=True,
                                         accuracy_level=0, op_types_to_quantize=("MatMul", "Gather"))
        quantizer.process()
        quantizer.model.save_model_to_file(str(path), use_external_data_format=False)
        return
    raise ValueError(f"unknown quantization {mode!r}; choose from {', '.join(MODES)}")
