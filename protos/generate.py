"""Regenerate the gRPC Python code from protos/ (run from the repository root):

    python protos/generate.py [OUT_DIR]

The proto path equals the Python package path (translation/v1), so the generated imports work."""

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ["translation/v1/translator.proto"]


def generate(out: Path) -> None:
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    for proto in PROTOS:
        code = protoc.main(["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", f"--python_out={out}",
                            f"--grpc_python_out={out}", f"--pyi_out={out}", str(ROOT / "protos" / proto)])
        if code:
            raise SystemExit(f"protoc failed on {proto}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
