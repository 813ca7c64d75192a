"""`python -m training {train,evaluate,translate,release,trim-vocab}`; see README."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from training.config import ConfigError


def cmd_train(args) -> None:
    from training.config import load_config
    from training.trainer import Trainer

    cfg = load_config(args.config, args.set or [])
    trainer = Trainer(cfg, resume=not args.restart)
    try:
        result = trainer.train()
    except BaseException:
        trainer.close(finished=False)
        raise
    trainer.close()
    if trainer.main:
        print(json.dumps(result))


def _load(checkpoint_path: str):
    """-> checkpoint, engine, and the text pipeline the server uses (segmentation, casing rule,
    protected items), so that what is evaluated is what is served."""
    from nmt.text import TextProcessor
    from nmt.tokenizer import Tokenizer
    from training import checkpoint
    from training.torch_engine import TorchEngine

    ckpt = checkpoint.load(checkpoint_path)
    model = checkpoint.build_model(ckpt)
    with tempfile.TemporaryDirectory(prefix="spm-") as tmp:  # tokenizers load the files into memory
        paths = checkpoint.write_spm(ckpt, Path(tmp))
        source, target = Tokenizer(paths["src"]), Tokenizer(paths["tgt"])
    words = ckpt.get("source_words")
    processor = TextProcessor(source, target, ckpt.get("languages", {}).get("source", "en"),
                              words.split("\n") if words else None,
                              copied_words=ckpt.get("copied_words", "").split("\n"),
                              target_language=ckpt.get("languages", {}).get("target", ""))
    return ckpt, TorchEngine(model), processor


def _options(args):
    from nmt.search import SearchOptions

    return SearchOptions(beam_size=args.beam, num_hypotheses=1, length_penalty=args.length_penalty,
                         max_length=args.max_length, max_length_factor=args.max_length_factor,
                         no_repeat_ngram_size=args.no_repeat_ngram_size,
                         repetition_penalty=args.repetition_penalty,
                         coverage_penalty=args.coverage_penalty)


def cmd_evaluate(args) -> None:
    import sacrebleu

    from nmt.text import translate_texts
    from training import checkpoint
    from training.data import read_lines

    ckpt, engine, processor = _load(args.checkpoint)
    sources, refs = read_lines(args.src), read_lines(args.ref)
    if len(sources) != len(refs):
        raise SystemExit(f"error: {args.src} has {len(sources)} lines, {args.ref} has {len(refs)}")
    outputs = [t.text for t in translate_texts(engine, processor, sources, _options(args),
                                               max_batch=args.batch_size, progress="translating")]
    bleu = sacrebleu.BLEU()
    chrf = sacrebleu.CHRF()
    b = bleu.corpus_score(outputs, [refs])
    c = chrf.corpus_score(outputs, [refs])
    result = {"bleu": round(b.score, 2), "bleu_signature": str(bleu.get_signature()),
              "chrf": round(c.score, 2), "chrf_signature": str(chrf.get_signature()),
              "beam_size": args.beam, "length_penalty": args.length_penalty,
              "max_length_factor": args.max_length_factor, "no_repeat_ngram_size": args.no_repeat_ngram_size,
              "repetition_penalty": args.repetition_penalty, "coverage_penalty": args.coverage_penalty,
              "test_set": Path(args.src).name, "sentences": len(sources)}
    print(f"BLEU {b.score:.2f}  ({result['bleu_signature']})")
    print(f"chrF {c.score:.2f}  ({result['chrf_signature']})")
    if args.output:
        Path(args.output).write_text("\n".join(outputs) + "\n", encoding="utf-8")
    if args.record:
        key = "greedy" if args.beam == 1 else f"beam{args.beam}"
        ckpt.setdefault("metrics", {}).setdefault("test", {})[key] = result
        checkpoint.save(Path(args.checkpoint), {k: v for k, v in ckpt.items() if k != "format"})
        print(f"recorded as metrics.test.{key} in {args.checkpoint}")


def cmd_translate(args) -> None:
    from nmt.text import translate_texts

    _, engine, processor = _load(args.checkpoint)
    lines = [line.rstrip("\n") for line in sys.stdin]
    for t in translate_texts(engine, processor, lines, _options(args), max_batch=args.batch_size):
        print(t.text)


def cmd_release(args) -> None:
    from training import checkpoint

    ckpt = checkpoint.load(args.checkpoint)
    checkpoint.save(Path(args.out), checkpoint.release(ckpt, half=not args.fp32))
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB)")


def cmd_trim_vocab(args) -> None:
    from training.trim_vocab import trim_checkpoint

    sizes = trim_checkpoint(args.checkpoint, args.out, args.train_src, args.train_tgt, args.epochs)
    print(f"wrote {args.out}: target vocabulary {sizes['from']} -> {sizes['to']} pieces")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train (resumes from OUT_DIR/last.pt when present)")
    p.add_argument("--config", help="TOML file, see configs/ (without one: the defaults and --set)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config key")
    p.add_argument("--restart", action="store_true", help="ignore an existing last.pt")
    p.set_defaults(func=cmd_train)

    def decoding(p):
        p.add_argument("--checkpoint", required=True)
        p.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
        p.add_argument("--length-penalty", type=float, default=1.0)
        p.add_argument("--max-length", type=int, default=100)
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--max-length-factor", type=float, default=2.0,
                       help="at most FACTOR x source tokens + 10 output tokens (0: off)")
        p.add_argument("--no-repeat-ngram-size", type=int, default=0, help="no n-gram twice (0: off)")
        p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats")
        p.add_argument("--coverage-penalty", type=float, default=0.0, help="GNMT coverage penalty beta")

    p = sub.add_parser("evaluate", help="translate a test set, print sacreBLEU and chrF")
    decoding(p)
    p.add_argument("--src", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--output", help="write the translations here")
    p.add_argument("--record", action="store_true", help="store the scores in the checkpoint")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("translate", help="translate stdin, one sentence per line")
    decoding(p)
    p.set_defaults(func=cmd_translate)
    p = sub.add_parser("release", help="strip optimizer state, store weights in half precision")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("trim-vocab", help="cut a joint vocabulary's target side to the pieces the "
                       "training targets use (a smaller output layer, a faster decoder step)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--train-src", required=True, help="the training sources (for the augmentation's lexicon)")
    p.add_argument("--train-tgt", required=True, help="the training targets")
    p.add_argument("--epochs", type=int, default=10, help="epochs of augmentation to collect pieces from")
    p.set_defaults(func=cmd_trim_vocab)
    args = parser.parse_args(argv)
    from training.checkpoint import CheckpointError
    from training.data import DataError

    try:
        args.func(args)
    except (ConfigError, DataError, CheckpointError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
