"""Does the model translate what people actually type? One table over variants of the same captions
and over sentences written for it, through the same text pipeline the server uses.

    python bench/robustness.py --bundle models/demo-de-en [--split test|val] [--beam 5]
    python bench/robustness.py --checkpoint runs/.../best.pt --split val     # before export

Variants of Multi30k captions (val or test_2016_flickr): clean; lower-cased; UPPER-CASED; Title Cased;
no final punctuation; three sentences per text (against the same sentences sent one by one);
plus bench/data/fragments.tsv (two-word fragments), bench/data/protected.tsv (numbers, URLs,
e-mails, names, emoji, with references), captions with such items inserted (verbatim rate only) and
captions with a phrase in brackets (BLEU of the words; "verbatim": the brackets kept, in order,
around something), captions with an emoji at the start or end (references with the same emoji) and
inside (BLEU of the words; "verbatim": the emoji once in the output), and with a number in brackets
after their second word, as in "Eine Frau (34) läuft" (the same), and the test and val captions
with quotation marks ("verbatim": the quoted text as typed between a pair of quotes), and
bench/data/numbers.tsv (German numbers with separators, dates and measures in words; "verbatim":
each as English writes it, "1.000" -> "1,000", "3. Mai" -> "May 3", found in the output).
BLEU is sacreBLEU, case-insensitive. "degenerate": a word four or more times in a row, or more
than three times as many words as the source. "verbatim": protected items found unchanged in the output
(numbers with separators: as English writes them, as the references do).
Writes bench/results/robustness-<split>-<name>.json; --plot saves a bar chart.
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.provenance import write_result  # noqa: E402
from training.augment import strip_final_punct, title_case  # noqa: E402

MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
DATA = ROOT / "bench" / "data"
NAMES = ["Grzegorz", "Balthasar", "Wiebke", "Oskarine", "Quirin", "Jolanthe", "Fiffikus", "Zdenka"]
EMOJI = ["😀", "🎸", "🍦", "🎉", "☕", "🐶"]
URLS = ["www.foto-archiv.de/bild123", "https://example.org/galerie", "kontakt@fotoclub.de", "info.104@mail.de"]
NUMBERS = {"Zwei": "2", "Drei": "3", "Vier": "4", "Fünf": "5", "Sechs": "6"}


def read(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def tsv(path: Path) -> tuple[list[str], list[str]]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r[0] for r in rows], [r[1] for r in rows]


def with_items(sources: list[str], seed: int = 0) -> list[tuple[str, list[str]]]:
    """Captions with a number, name, emoji, URL or e-mail put in: (sentence, items to keep)."""
    rng = random.Random(seed)
    out = []
    for s in sources:
        body = s.rstrip(" .")
        first = s.split(" ", 1)[0]
        kind = len(out) % 4
        if kind == 0 and first in NUMBERS:
            out.append((NUMBERS[first] + s[len(first):], [NUMBERS[first]]))
        elif kind == 1 and re.match(r"^(Ein Mann|Eine Frau|Ein Junge|Ein Mädchen|Ein Hund) ", s):
            name = rng.choice(NAMES)
            head = " ".join(s.split(" ")[:2])
            out.append((f"{head} namens {name}{s[len(head):]}", [name]))
        elif kind == 2:
            e = rng.choice(EMOJI)
            out.append((f"{body} {e}.", [e]))
        elif kind == 3:
            u = rng.choice(URLS)
            out.append((f"{body}, zu sehen auf {u}.", [u]))
    return out


PREPOSITIONS = {"in", "im", "auf", "an", "am", "mit", "vor", "neben", "unter", "über", "hinter", "zwischen",
                "bei", "beim", "durch", "entlang", "vom", "von", "aus", "zum", "zur", "nach"}
BRACKETS = re.compile(r"\([^()]*\)")


def with_brackets(sources: list[str], refs: list[str]) -> tuple[list[str], list[str]]:
    """Captions with a prepositional phrase put in brackets, and their references: the last phrase
    ("Ein Kind spielt (im Garten).") or, every other caption, the first, as three words ("Ein Mann
    (mit einem Hut) fährt Fahrrad."). Captions without one are left out."""
    out, kept = [], []
    for k, (s, r) in enumerate(zip(sources, refs)):
        words = s.rstrip(" .").split(" ")
        at = [i for i, w in enumerate(words) if w in PREPOSITIONS and 0 < i < len(words) - 1]
        if not at:
            continue
        if k % 2 and at[0] + 3 < len(words):
            a, b = at[0], at[0] + 3
        else:
            a, b = at[-1], len(words)
        words[a] = "(" + words[a]
        words[b - 1] += ")"
        out.append(" ".join(words) + s[len(s.rstrip(" .")):])
        kept.append(r)
    return out, kept


def with_edge_emoji(sources: list[str], refs: list[str]) -> tuple[list[str], list[str]]:
    """Captions with an emoji at the end (no final mark), before the final full stop, or at the
    start, in turn, and their references with the same emoji in the same place."""
    places = (lambda s, e: strip_final_punct(s) + " " + e, lambda s, e: s.rstrip(" .") + " " + e + ".",
              lambda s, e: e + " " + s)
    return ([places[i % 3](s, EMOJI[i % len(EMOJI)]) for i, s in enumerate(sources)],
            [places[i % 3](r, EMOJI[i % len(EMOJI)]) for i, r in enumerate(refs)])


def with_inner_emoji(sources: list[str]) -> list[tuple[str, str]]:
    """Captions with an emoji after their second word: (sentence, the emoji)."""
    return [(" ".join(s.split(" ")[:2] + [EMOJI[i % len(EMOJI)]] + s.split(" ")[2:]), EMOJI[i % len(EMOJI)])
            for i, s in enumerate(sources)]


def with_bracketed_number(sources: list[str]) -> list[tuple[str, str]]:
    """Captions with an age-like number in brackets after their second word ("Eine Frau (34)
    läuft ..."): (sentence, the aside)."""
    return [(" ".join(s.split(" ")[:2] + [f"({18 + i % 60})"] + s.split(" ")[2:]), f"({18 + i % 60})")
            for i, s in enumerate(sources)]


def quoted_captions() -> tuple[list[str], list[str]]:
    """The Multi30k test and val captions with quotation marks (names, what a sign says), with
    their references."""
    pairs = [(s, r) for split in ("test_2016_flickr", "val")
             for s, r in zip(read(MULTI30K / f"{split}.de.gz"), read(MULTI30K / f"{split}.en.gz"))
             if re.search(r'"[^"]+"|„[^“]+“', s)]
    return [s for s, _ in pairs], [r for _, r in pairs]


def brackets_kept(output: str) -> bool:
    """One pair of brackets, in order, around something."""
    return output.count("(") == output.count(")") == 1 and bool(re.search(r"\(\S[^()]*\)", output))


def degenerate(source: str, output: str) -> bool:
    words = [w.strip(".,!?;:\"'").lower() for w in output.split()]
    run = 1
    for a, b in zip(words, words[1:]):
        run = run + 1 if a == b and a else 1
        if run >= 4:
            return True
    return len(words) > 3 * max(len(source.split()), 1)


def identical_items(source: str, reference: str, render=lambda w: w) -> list[str]:
    """Items of the hand-written set: numbers, URLs, e-mail addresses, emoji and names (capitalised
    words after the first) that appear in the reference unchanged, or as `render` writes them (a
    number the target language writes with other separators: "1,5" -> "1.5")."""
    strip = lambda w: w.rstrip(".,")  # noqa: E731
    ref = {strip(w) for w in reference.split()}
    words = [strip(w) for w in source.split()]
    item = lambda i, w: (any(not ch.isalpha() for ch in w) or (i > 0 and w[:1].isupper()))  # noqa: E731
    return [x for i, w in enumerate(words) if w and item(i, w) for x in [w if w in ref else render(w)] if x in ref]


def localized_items(source: str, reference: str, localizer) -> list[str]:
    """The numbers with separators, dates and measures in words of a source sentence, as the target
    language writes them; each must be in the reference (the data file is checked, not trusted)."""
    from nmt.protect import protect

    items = protect(source, localized=localizer.spans(source)).items.values()
    # the whole item where the reference has it, else the number without its unit word (English
    # says "a 1.5 meter fence", the rule writes "1.5 meters")
    wanted = [x if x in reference else re.sub(r"\s?[^\W\d_]+$", "", x)
              for x, v in ((localizer.render(v), v) for v in items) if x != v]
    missing = [x for x in wanted if x not in reference]
    if missing:
        raise ValueError(f"bench/data/numbers.tsv: the reference of {source!r} lacks {missing}")
    return wanted


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", help="a model bundle (ONNX Runtime, as served)")
    p.add_argument("--checkpoint", help="or a training checkpoint (PyTorch)")
    p.add_argument("--name", help="name in the result file (default: the bundle's or checkpoint's)")
    p.add_argument("--split", choices=["test", "val"], default="test")
    p.add_argument("--sentences", type=int, default=0, help="use the first N captions (0: all)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--length-factor", type=float, default=2.0)
    p.add_argument("--no-repeat-ngram", type=int, default=0)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--coverage-penalty", type=float, default=0.0)
    p.add_argument("--casing", choices=["truecase", "lower", "none"], default="truecase",
                   help="rule for all-caps, all-lower and Title Case input (see nmt/text.py)")
    p.add_argument("--punctuation", choices=["complete", "as-typed"], default="complete",
                   help="complete: add a full stop to sentences typed without one (then drop it)")
    p.add_argument("--no-split", action="store_true", help="translate each text as one row (no segmentation)")
    p.add_argument("--no-protect", action="store_true", help="no placeholders for protected items")
    p.add_argument("--no-names", action="store_true", help="do not protect unknown capitalised words")
    p.add_argument("--no-brackets", action="store_true", help="leave brackets to the model (see nmt/brackets.py)")
    p.add_argument("--no-emoji-apart", action="store_true", help="emoji reach the model as placeholders (see nmt/text.py)")
    p.add_argument("--no-asides", action="store_true", help="a number alone in brackets reaches the model (see nmt/text.py)")
    p.add_argument("--no-quotations", action="store_true", help="quotations reach the model (see nmt/protect.py)")
    p.add_argument("--no-localize", action="store_true", help="numbers and dates as typed (see nmt/numbers.py)")
    p.add_argument("--only", help="comma-separated variants to run (default: all)")
    p.add_argument("--plot", help="save a bar chart here")
    args = p.parse_args()

    import sacrebleu

    from nmt.search import SearchOptions
    from nmt.text import translate_texts

    engine, processor, name = load(args)
    processor.casing = args.casing
    processor.complete_punctuation = args.punctuation == "complete"
    processor.segment = not args.no_split
    if args.no_protect:
        processor._src_placeholders, processor._tgt_placeholders = {}, {}
    if args.no_names:
        processor.protect_names = False
    if args.no_brackets:
        processor.brackets = False
    if args.no_emoji_apart:
        processor.emoji_apart = False
    if args.no_asides:
        processor.asides = False
    if args.no_quotations:
        processor.quotations = False
    if args.no_localize:
        processor.localize = False
    options = SearchOptions(beam_size=args.beam, max_length=200, max_length_factor=args.length_factor,
                            no_repeat_ngram_size=args.no_repeat_ngram,
                            repetition_penalty=args.repetition_penalty,
                            coverage_penalty=args.coverage_penalty)
    split = "test_2016_flickr" if args.split == "test" else "val"
    src = read(MULTI30K / f"{split}.de.gz")
    ref = read(MULTI30K / f"{split}.en.gz")
    if args.sentences:
        src, ref = src[: args.sentences], ref[: args.sentences]
    triples = len(src) // 3 * 3
    variants = {
        "clean": (src, ref),
        "lower-cased": ([s.lower() for s in src], ref),
        "UPPER-CASED": ([s.upper() for s in src], ref),
        "Title Cased": ([title_case(s) for s in src], ref),
        # the translation of a sentence typed without its full stop ends without one too
        "no final punctuation": ([strip_final_punct(s) for s in src], [strip_final_punct(r) for r in ref]),
        "three sentences per text": ([" ".join(src[i:i + 3]) for i in range(0, triples, 3)],
                                     [" ".join(ref[i:i + 3]) for i in range(0, triples, 3)]),
        "two-word fragments": tsv(DATA / "fragments.tsv"),
        "protected items (written)": tsv(DATA / "protected.tsv"),
        "a phrase in brackets": with_brackets(src, ref),
        "an emoji at the start or end": with_edge_emoji(src, ref),
        "an emoji inside": ([s for s, _ in with_inner_emoji(src)], ref),
        "a number in brackets inside": ([s for s, _ in with_bracketed_number(src)], ref),
        "quotations (test and val captions with quotes)": quoted_captions(),
        "numbers and dates (written)": tsv(DATA / "numbers.tsv"),
    }
    inserted = with_items(src)
    wanted = set(args.only.split(",")) if args.only else None
    rows = []
    for variant, (sources, refs) in variants.items():
        if wanted and variant not in wanted:
            continue
        outputs = [t.text for t in translate_texts(engine, processor, sources, options, max_batch=64)]
        if variant == "a phrase in brackets":  # BLEU of the words, brackets counted apart
            kept = sum(map(brackets_kept, outputs))
            outputs = [re.sub(r"\s+", " ", o.replace("(", " ").replace(")", " ")).strip() for o in outputs]
        if variant in ("an emoji inside", "a number in brackets inside"):  # BLEU of the words, the insert counted apart
            inserts = [e for _, e in (with_inner_emoji(src) if variant == "an emoji inside" else with_bracketed_number(src))]
            kept = sum(o.count(e) == 1 for o, e in zip(outputs, inserts))
            outputs = [" ".join(o.replace(e, " ").split()) for o, e in zip(outputs, inserts)]
        row = {"variant": variant, "texts": len(sources),
               "bleu": round(sacrebleu.corpus_bleu(outputs, [refs], lowercase=True).score, 2),
               "degenerate": round(100 * sum(map(degenerate, sources, outputs)) / len(sources), 2)}
        if variant == "protected items (written)":
            items = [(identical_items(s, r, processor.localizer.render), o) for s, r, o in zip(sources, refs, outputs)]
            total = sum(len(i) for i, _ in items)
            row["verbatim"] = round(100 * sum(x in o for i, o in items for x in i) / max(total, 1), 2)
            row["items"] = total
        if variant.startswith("numbers and dates"):
            items = [(localized_items(s, r, processor.localizer), o) for s, r, o in zip(sources, refs, outputs)]
            row["items"], row["unit"] = sum(len(i) for i, _ in items), "as English writes them"
            row["verbatim"] = round(100 * sum(x in o for i, o in items for x in i) / max(row["items"], 1), 2)
        if variant in ("a phrase in brackets", "an emoji inside", "a number in brackets inside"):
            row["verbatim"], row["items"] = round(100 * kept / len(sources), 2), len(sources)
            row["unit"] = {"a phrase in brackets": "bracket pairs", "an emoji inside": "emoji, once"}.get(
                variant, "asides, once")
        if variant.startswith("quotations"):  # the quoted text, as typed, between a pair of quotes
            quoted = [re.findall(r'"([^"]+)"|„([^“]+)“', s) for s in sources]
            found = [(next(x for x in q if x), o) for qs, o in zip(quoted, outputs) for q in qs]
            row["verbatim"] = round(100 * sum(f'"{x}"' in o for x, o in found) / max(len(found), 1), 2)
            row["items"], row["unit"] = len(found), "quotations in quotes"
        if variant == "three sentences per text":
            singles = [t.text for t in translate_texts(engine, processor, src[:triples], options)]
            joined = [" ".join(singles[i:i + 3]) for i in range(0, triples, 3)]
            row["one_by_one_bleu"] = round(sacrebleu.corpus_bleu(joined, [refs], lowercase=True).score, 2)
        rows.append(row)
        print(f"{variant}: {row}", flush=True)
    if not wanted or "protected items (inserted)" in wanted:
        sources = [s for s, _ in inserted]
        outputs = [t.text for t in translate_texts(engine, processor, sources, options)]
        kept = sum(x in o for (_, items), o in zip(inserted, outputs) for x in items)
        total = sum(len(items) for _, items in inserted)
        rows.append({"variant": "protected items (inserted)", "texts": len(sources), "bleu": None,
                     "degenerate": round(100 * sum(map(degenerate, sources, outputs)) / len(sources), 2),
                     "verbatim": round(100 * kept / max(total, 1), 2), "items": total})
        print(f"protected items (inserted): {rows[-1]}", flush=True)
    print_table(rows)
    settings = {k: v for k, v in vars(args).items() if k not in ("plot",)}
    write_result(f"robustness-{args.split}-{name}", {"model": name, "settings": settings, "rows": rows})
    if args.plot:
        plot(rows, args.plot, name)


def load(args):
    from nmt.text import TextProcessor
    from nmt.tokenizer import Tokenizer

    if args.bundle:
        from nmt.bundle import load_bundle
        from service.models import text_processor
        from service.onnx_engine import OnnxEngine

        bundle = load_bundle(args.bundle)
        source, target = Tokenizer(bundle.source_tokenizer), Tokenizer(bundle.target_tokenizer)
        return OnnxEngine(bundle), text_processor(bundle, source, target), args.name or bundle.name
    import tempfile

    from training import checkpoint
    from training.torch_engine import TorchEngine

    ckpt = checkpoint.load(args.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        paths = checkpoint.write_spm(ckpt, Path(tmp))
        source, target = Tokenizer(paths["src"]), Tokenizer(paths["tgt"])
    words = ckpt.get("source_words")
    processor = TextProcessor(source, target, ckpt["languages"]["source"],
                              words.split("\n") if words else None,
                              copied_words=ckpt.get("copied_words", "").split("\n"),
                              target_language=ckpt["languages"].get("target", ""))
    return TorchEngine(checkpoint.build_model(ckpt)), processor, args.name or Path(args.checkpoint).stem


def print_table(rows: list[dict]) -> None:
    print("| input | texts | BLEU (case-insensitive) | degenerate | verbatim |")
    print("|---|---|---|---|---|")
    for r in rows:
        bleu = "" if r["bleu"] is None else f"{r['bleu']:.2f}"
        if "one_by_one_bleu" in r:
            bleu += f" (one by one: {r['one_by_one_bleu']:.2f})"
        verbatim = f"{r['verbatim']:.1f}% of {r['items']}{' ' + r['unit'] if 'unit' in r else ''}" if "verbatim" in r else ""
        print(f"| {r['variant']} | {r['texts']} | {bleu} | {r['degenerate']:.1f}% | {verbatim} |")


def plot(rows: list[dict], path: str, name: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["bleu"] is not None]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh([r["variant"] for r in shown][::-1], [r["bleu"] for r in shown][::-1], color="#4c72b0")
    ax.set_xlabel("BLEU (case-insensitive)")
    ax.set_title(f"{name}: the same captions as people type them")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
