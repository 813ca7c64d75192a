"""Training configuration: a TOML file (see configs/*.toml, every key explained there) plus
`--set section.key=value` overrides. Unknown keys are errors that list the valid ones."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path


class ConfigError(ValueError):
    pass


@dataclass
class DataConfig:
    src_lang: str = "de"
    tgt_lang: str = "en"
    train_src: str = ""
    train_tgt: str = ""
    train_tsv: str = ""
    valid_src: str = ""
    valid_tgt: str = ""
    valid_tsv: str = ""
    test_src: str = ""
    test_tgt: str = ""
    max_tokens: int = 80  # drop training pairs longer than this (subword tokens, either side)
    dedupe: bool = False
    normalize: bool = True
    license: str = ""
    # Corpora larger than memory (training/stream.py): read pair by pair, each rank its share,
    # bucketed within windows; vocabulary and lexicons from a sample. dedupe does not apply.
    streaming: bool = False
    window: int = 100_000  # pairs per bucketing window (per rank)
    sample: int = 1_000_000  # pairs sampled for SentencePiece, lexicons and the casing table


@dataclass
class VocabConfig:
    type: str = "unigram"  # unigram | bpe
    size: int = 8000
    joint: bool = True


@dataclass
class AugmentConfig:
    # On by default: every model the project trains should read what people type.
    lower: float = 0.10  # share of training pairs lower-cased (both sides), drawn anew each epoch
    upper: float = 0.05  # ... UPPER-CASED
    title: float = 0.05  # ... Title Cased
    strip_punct: float = 0.20  # ... without final punctuation
    placeholders: float = 0.15  # ... with aligned word pairs replaced by placeholders (copying)
    max_placeholders: int = 2  # placeholders per changed pair, at most
    fragments: float = 0.0  # ... replaced by a short phrase of it (1-3 words each side)


@dataclass
class ModelSection:
    rnn_type: str = "gru"
    emb_size: int = 256
    encoder_hidden: int = 256
    encoder_layers: int = 1
    decoder_hidden: int = 512
    attention: str = "additive"
    attention_size: int = 512
    output_size: int = 512
    dropout: float = 0.3
    input_feeding: bool = True
    tie_embeddings: bool = False


@dataclass
class TrainConfig:
    out_dir: str = "runs/model"
    seed: int = 1
    batch_tokens: int = 1200
    lr: float = 1e-3
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    max_steps: int = 20000
    max_minutes: float = 0.0  # stop after this long (0: no limit), for a fixed time budget
    valid_every: int = 500
    save_every: int = 500
    patience: int = 8  # early stopping: validations without a better BLEU
    lr_decay: float = 0.5
    lr_patience: int = 2
    min_lr: float = 5e-5
    threads: int = 0  # torch intra-op threads, 0 = library default
    valid_max_sentences: int = 0  # 0 = whole validation set
    valid_beam: int = 1
    heatmaps: int = 3  # attention heatmap PNGs per validation
    max_output_tokens: int = 100
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 with a gradient scaler, CUDA only)
    init_from: str = ""  # start from this checkpoint's weights and vocabulary (fine-tuning)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)


CHOICES = {("vocab", "type"): ("unigram", "bpe"), ("model", "rnn_type"): ("gru", "lstm"),
           ("model", "attention"): ("additive", "dot", "general"), ("train", "device"): ("auto", "cpu", "cuda"),
           ("train", "precision"): ("fp32", "bf16", "fp16")}


def _coerce(value: str, like):
    if isinstance(like, bool):
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ConfigError(f"expected true or false, got {value!r}")
    return type(like)(value)


def _apply(cfg: Config, section: str, key: str, value, where: str) -> None:
    sections = {f.name for f in fields(Config)}
    if section not in sections:
        raise ConfigError(f"{where}: unknown section [{section}]; valid sections: {', '.join(sorted(sections))}")
    target = getattr(cfg, section)
    valid = {f.name for f in fields(target)}
    if key not in valid:
        raise ConfigError(f"{where}: unknown key {section}.{key}; valid keys of [{section}]: "
                          f"{', '.join(sorted(valid))}")
    current = getattr(target, key)
    try:
        value = _coerce(value, current) if isinstance(value, str) and not isinstance(current, str) else value
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(current):
            raise ConfigError(f"expected {type(current).__name__}, got {type(value).__name__}")
    except (ValueError, ConfigError) as e:
        raise ConfigError(f"{where}: {section}.{key}: {e}") from None
    allowed = CHOICES.get((section, key))
    if allowed and value not in allowed:
        raise ConfigError(f"{where}: {section}.{key} = {value!r}; choose one of {', '.join(allowed)}")
    setattr(target, key, value)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: {section} must be a [section]")
            for key, value in values.items():
                _apply(cfg, section, key, value, str(path))
    for item in overrides:
        name, sep, value = item.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        _apply(cfg, section.strip(), key.strip(), value.strip(), "--set")
    return cfg


def as_dict(cfg: Config) -> dict:
    return {f.name: {g.name: getattr(getattr(cfg, f.name), g.name) for g in fields(getattr(cfg, f.name))}
            for f in fields(cfg)}
