"""A model bundle on disk: manifest.json, encoder.onnx, decoder.onnx, SentencePiece model(s) and a
model card. `load_bundle` validates it completely before anything is served."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nmt.tokenizer import file_sha256

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class BundleError(ValueError):
    """The bundle cannot be served; the message names the file and what is wrong."""


@dataclass
class Bundle:
    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.manifest["name"]

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def source_tokenizer(self) -> Path:
        return self.file(self.manifest["tokenizers"]["source"])

    @property
    def target_tokenizer(self) -> Path:
        return self.file(self.manifest["tokenizers"]["target"])


def load_bundle(path: str | Path) -> Bundle:
    """Read the manifest and check the format version and the sha256 of every file it lists."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing (is {path} a model bundle?)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{manifest_path}: not valid JSON ({e})") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{manifest_path}: format_version {version!r} is not supported "
                          f"(this server reads version {FORMAT_VERSION})")
    for key in ("name", "files", "graphs", "tokenizers", "special_ids", "decoder_state"):
        if key not in manifest:
            raise BundleError(f"{manifest_path}: required key {key!r} is missing")
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{file}: missing (listed in {MANIFEST})")
        actual = file_sha256(file)
        if actual != expected:
            raise BundleError(f"{file}: sha256 {actual} does not match {MANIFEST} ({expected}); "
                              f"the file is corrupted or was changed after export")
    for role in ("encoder", "decoder"):
        if manifest["graphs"][role]["file"] not in manifest["files"]:
            raise BundleError(f"{manifest_path}: the {role} graph is not among the hashed files")
    return Bundle(path, manifest)
