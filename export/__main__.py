"""python -m export --checkpoint CKPT --out DIR [--quantize int8]

Writes a model bundle (encoder.onnx, decoder.onnx, SentencePiece model(s), manifest.json,
MODEL_CARD.md) and refuses to finish unless the ONNX engine translates like the PyTorch model."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from export import bundle_writer, quantize
from export.onnx_export import HALF_MIN_ELEMENTS, OPSET, export_graphs, store_half
from export.verify import batch_invariance, made_up_sentences, parity

MULTI30K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "multi30k"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by python -m training")
    p.add_argument("--out", required=True, help="bundle directory to write (replaced if it exists)")
    p.add_argument("--name", help="model name clients use (default: SOURCE-TARGET, e.g. fr-en)")
    p.add_argument("--quantize", choices=["none", *quantize.MODES], default="none",
                   help="int8: 8-bit weights, batch-invariant; int8-dynamic: onnxruntime dynamic "
                        "quantization, faster but a sentence's output depends on its batch")
    p.add_argument("--fp32-weights", action="store_true", help="store weights in fp32 (default: fp16, computed in fp32)")
    p.add_argument("--verify-src", help="source sentences for the checks (default: Multi30k test_2016_flickr when present)")
    p.add_argument("--verify-ref", help="references, for the BLEU of quantized bundles")
    p.add_argument("--verify-sentences", type=int, default=1000, help="at most this many sentences are checked")
    p.add_argument("--min-identical", type=float, default=0.995, help="required share of identical greedy outputs")
    p.add_argument("--max-log-prob-diff", type=float, default=1e-3, help="tolerance on a hypothesis' log-prob")
    p.add_argument("--max-bleu-loss", type=float, default=0.5, help="quantized bundles: allowed BLEU loss")
    p.add_argument("--max-length", type=int, default=100)
    p.add_argument("--shortlist-corpus", nargs=2, metavar=("SRC", "TGT"),
                   help="parallel training text for the vocabulary shortlist (default: Multi30k train "
                        "when present; the bundle has no shortlist without one)")
    p.add_argument("--shortlist-size", nargs=2, type=int, metavar=("FREQUENT", "PER_TOKEN"), default=(100, 50),
                   help="target tokens every sentence may produce, and candidates per source token")
    p.add_argument("--no-shortlist", action="store_true", help="write no vocabulary shortlist")
    args = p.parse_args(argv)

    from nmt.bundle import load_bundle
    from nmt.tokenizer import Tokenizer
    from service.onnx_engine import OnnxEngine
    from training import checkpoint
    from training.data import read_lines
    from training.torch_engine import TorchEngine

    try:
        ckpt = checkpoint.load(args.checkpoint)
    except checkpoint.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    model = checkpoint.build_model(ckpt)
    out = Path(args.out)
    langs = ckpt.get("languages", {})
    name = args.name or f"{langs.get('source', 'src')}-{langs.get('target', 'tgt')}"
    work = Path(tempfile.mkdtemp(prefix="bundle-"))
    spm = checkpoint.write_spm(ckpt, work)
    src_tok, tgt_tok = Tokenizer(spm["src"]), Tokenizer(spm["tgt"])
    if ckpt.get("source_words"):  # what serving counts as a known word (unknown names are copied)
        (work / "source_words.txt").write_text(ckpt["source_words"], encoding="utf-8")
    copied = _copied_words(args, ckpt, read_lines)
    if copied is not None:  # rare names, copied all the same (training.augment.copied_words)
        (work / "copied_words.txt").write_text(copied, encoding="utf-8")
    print(f"exporting {args.checkpoint} (step {ckpt.get('step')}) to {out} ...")
    graphs = export_graphs(model, work)
    if args.quantize != "none":
        for role in ("encoder", "decoder"):
            quantize.apply(graphs[role], args.quantize)
    if not args.fp32_weights:
        for path in graphs.values():
            store_half(path)
    shortlist = None if args.no_shortlist else _shortlist(args, ckpt, src_tok, tgt_tok, work, read_lines)
    bundle_writer.write(work, name, ckpt, model, args.quantize, "float32" if args.fp32_weights else "float16", OPSET,
                        shortlist)

    # -- checks -------------------------------------------------------------------------
    sources, refs, where = _verification_set(args, langs, read_lines)
    src_ids = src_tok.encode_batch(sources) if sources else made_up_sentences(len(src_tok))
    src_ids = src_ids[: args.verify_sentences]
    refs = refs[: args.verify_sentences] if refs else None
    onnx_engine = OnnxEngine(load_bundle(work))  # checked where it was written; published only if it passes
    if not args.fp32_weights:
        # compare like with like: the reference computes with the weights the bundle stores
        checkpoint.round_weights_to_half(model, HALF_MIN_ELEMENTS)
    torch_engine = TorchEngine(model, packed=True)
    report = {"verification_set": where}
    report["parity_greedy"] = parity(torch_engine, onnx_engine, src_ids, args.max_length)
    report["batch_invariance"] = batch_invariance(onnx_engine, src_ids[:300], args.max_length)
    if refs:
        onnx_scores = _scores(onnx_engine, src_ids, refs, tgt_tok, args.max_length)
        report["bleu_greedy_onnx"] = onnx_scores["bleu"]
        report["bleu_greedy_torch"] = _scores(torch_engine, src_ids, refs, tgt_tok, args.max_length)["bleu"]
    if onnx_engine.shortlist is not None:
        report["shortlist"] = _shortlist_check(onnx_engine, src_ids, refs, tgt_tok, args.max_length)
    _print_report(report)
    failures = []
    par = report["parity_greedy"]
    if args.quantize == "none":
        if par["identical"] < args.min_identical:
            failures.append(f"only {par['identical']:.2%} of greedy outputs are identical "
                            f"(required {args.min_identical:.2%})")
        if par["max_log_prob_diff"] > args.max_log_prob_diff:
            failures.append(f"log-prob difference {par['max_log_prob_diff']:.2e} exceeds {args.max_log_prob_diff:.0e}")
    elif refs:
        loss = report["bleu_greedy_torch"] - report["bleu_greedy_onnx"]
        if loss > args.max_bleu_loss:
            failures.append(f"quantization loses {loss:.2f} BLEU (allowed {args.max_bleu_loss})")
    # A quantized bundle reports its own scores, not the fp32 checkpoint's.
    own_scores = {"greedy": onnx_scores} if args.quantize != "none" and refs else None
    bundle_writer.add_verification(work, report, own_scores)
    if failures:
        print("EXPORT REJECTED:\n  " + "\n  ".join(failures) + f"\n(the bundle is left at {work})", file=sys.stderr)
        return 2
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(work, out)
    shutil.rmtree(work)
    out.chmod(0o755)
    print(f"bundle ready: {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB)")
    return 0


def _training_corpus(args, ckpt) -> tuple[Path, Path] | None:
    """The training corpus: the one given (--shortlist-corpus), else the checkpoint's own training
    files, else Multi30k train when present."""
    data = (ckpt.get("training_config") or {}).get("data", {})
    langs = ckpt.get("languages", {})
    candidates = [tuple(map(Path, args.shortlist_corpus))] if args.shortlist_corpus else [
        (Path(data.get("train_src") or "-"), Path(data.get("train_tgt") or "-")),
        tuple(MULTI30K / f"train.{langs.get(side)}.gz" for side in ("source", "target"))]
    return next(((s, t) for s, t in candidates if s.is_file() and t.is_file()), None)


def _copied_words(args, ckpt, read_lines) -> str | None:
    """The checkpoint's copied words, or those of its training corpus (checkpoints from before)."""
    if "copied_words" in ckpt:
        return ckpt["copied_words"]
    corpus = _training_corpus(args, ckpt)
    if corpus is None:
        return None
    from training.augment import copied_words

    return "\n".join(copied_words(read_lines(corpus[0]), read_lines(corpus[1])))


def _shortlist(args, ckpt, src_tok, tgt_tok, work: Path, read_lines) -> dict | None:
    """Build the vocabulary shortlist into work/shortlist.npz from the training corpus."""
    from nmt.protect import PLACEHOLDERS
    from nmt.shortlist import build
    from nmt.tokenizer import EOS_ID

    corpus = _training_corpus(args, ckpt)
    if corpus is None:
        print("no shortlist: the training corpus was not found (--shortlist-corpus SRC TGT)")
        return None
    src, tgt = corpus
    frequent, per_token = args.shortlist_size
    pieces = lambda tok: [tok.sp.id_to_piece(i) for i in range(len(tok))]  # noqa: E731
    always = [EOS_ID] + [tgt_tok.sp.piece_to_id(p) for p in PLACEHOLDERS if tgt_tok.sp.piece_to_id(p) > 0]
    table = build(src_tok.encode_batch(read_lines(src)), tgt_tok.encode_batch(read_lines(tgt)),
                  pieces(src_tok), pieces(tgt_tok), always, frequent, per_token)
    table.save(work / "shortlist.npz")
    return {"file": "shortlist.npz", "frequent": frequent, "per_token": per_token, "scoring": "dice",
            "corpus": [src.name, tgt.name]}


def _verification_set(args, langs, read_lines):
    if args.verify_src:
        return read_lines(args.verify_src), read_lines(args.verify_ref) if args.verify_ref else None, args.verify_src
    src = MULTI30K / f"test_2016_flickr.{langs.get('source')}.gz"
    ref = MULTI30K / f"test_2016_flickr.{langs.get('target')}.gz"
    if src.exists() and ref.exists():
        return read_lines(src), read_lines(ref), "Multi30k test_2016_flickr"
    return None, None, "made-up subword sequences (no test set found)"


def _shortlist_check(engine, src_ids, refs, tgt_tok, max_length) -> dict:
    """Greedy with the shortlist vs the full vocabulary: identical outputs, BLEU of each."""
    import sacrebleu

    from nmt.search import SearchOptions, translate_batch

    outputs = {}
    for use in (False, True):
        hyps = translate_batch(engine, src_ids, SearchOptions(max_length=max_length, use_shortlist=use))
        outputs[use] = [h[0].token_ids if h else [] for h in hyps]
    same = sum(a == b for a, b in zip(outputs[False], outputs[True]))
    result = {"sentences": len(src_ids), "identical": same / max(1, len(src_ids))}
    if refs:
        result["bleu_greedy"] = round(sacrebleu.corpus_bleu(tgt_tok.decode_batch(outputs[True]), [refs]).score, 2)
    return result


def _scores(engine, src_ids, refs, tgt_tok, max_length) -> dict:
    import sacrebleu

    from nmt.search import SearchOptions, translate_batch

    hyps = translate_batch(engine, src_ids, SearchOptions(max_length=max_length))
    outputs = tgt_tok.decode_batch([h[0].token_ids if h else [] for h in hyps])
    bleu, chrf = sacrebleu.BLEU(), sacrebleu.CHRF()
    return {"bleu": round(bleu.corpus_score(outputs, [refs]).score, 2), "bleu_signature": str(bleu.get_signature()),
            "chrf": round(chrf.corpus_score(outputs, [refs]).score, 2), "chrf_signature": str(chrf.get_signature()),
            "beam_size": 1, "sentences": len(refs)}


def _print_report(report: dict) -> None:
    par, inv = report["parity_greedy"], report["batch_invariance"]
    print(f"checked on {report['verification_set']}:")
    print(f"  PyTorch vs ONNX Runtime, greedy: {par['identical']:.2%} identical of {par['sentences']}, "
          f"log-prob diff max {par['max_log_prob_diff']:.2e} mean {par['mean_log_prob_diff']:.2e}")
    print(f"  batch invariance (alone vs batch of {inv['batch']}): {inv['identical']:.2%} identical of {inv['sentences']}")
    if "bleu_greedy_onnx" in report:
        print(f"  greedy BLEU: ONNX {report['bleu_greedy_onnx']}, PyTorch {report['bleu_greedy_torch']}")
    if "shortlist" in report:
        sl = report["shortlist"]
        print(f"  vocabulary shortlist: {sl['identical']:.2%} identical to the full vocabulary"
              + (f", greedy BLEU {sl['bleu_greedy']}" if "bleu_greedy" in sl else ""))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
