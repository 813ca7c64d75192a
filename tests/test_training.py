"""Training: data readers, configuration errors, model parts, the loop, resumption, DDP."""

import gzip
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.tiny import MULTI30K, tiny_overrides
from training import checkpoint
from training.config import ConfigError, load_config
from training.data import DataError, read_parallel, read_tsv
from training.model import ModelConfig, Seq2Seq
from training.trainer import Trainer, make_batches

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_readers_report_file_and_line(tmp_path):
    (tmp_path / "a").write_text("eins\nzwei\n")
    (tmp_path / "b").write_text("one\n")
    with pytest.raises(DataError, match=r"misaligned corpus: .*a has 2 lines, .*b has 1"):
        read_parallel(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b").write_text("one\n  \n")
    with pytest.raises(DataError, match=r"b:2: empty line"):
        read_parallel(tmp_path / "a", tmp_path / "b")
    (tmp_path / "c").write_bytes(b"ok\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"c:2: not valid UTF-8"):
        read_parallel(tmp_path / "c", tmp_path / "a")
    with gzip.open(tmp_path / "d.tsv.gz", "wt") as f:
        f.write("Hallo\tHello\tCC-BY 2.0 (France) Attribution: tatoeba.org\n")
    corpus = read_tsv(tmp_path / "d.tsv.gz")
    assert (corpus.sources, corpus.targets) == (["Hallo"], ["Hello"])
    with pytest.raises(DataError, match="no such file"):
        read_tsv(tmp_path / "missing.tsv")


def test_config_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nhiden = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key model.hiden; valid keys of \[model\]: .*decoder_hidden"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found: .*nope.toml"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"train.lr: .*could not convert"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match=r"model.attention = 'concat'; choose one of additive, dot, general"):
        load_config(None, ["model.attention=concat"])
    assert load_config(ROOT / "configs" / "multi30k_de_en.toml").model.attention == "additive"
    # the CLI answers with one line, not a traceback
    run = subprocess.run([sys.executable, "-m", "training", "train", "--config", str(bad)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 1 and run.stderr.startswith("error: ") and "Traceback" not in run.stderr


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("attention", ["additive", "dot", "general"])
def test_packed_and_unpacked_encoders_agree_and_attention_ignores_padding(rnn_type, attention):
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(30, 30, rnn_type=rnn_type, attention=attention, emb_size=8,
                                encoder_hidden=8, decoder_hidden=16, attention_size=8,
                                output_size=8, encoder_layers=2)).eval()
    lengths = torch.tensor([7, 2, 5, 1])
    src = torch.randint(4, 30, (4, 7)) * (torch.arange(7) < lengths[:, None])
    packed, unpacked = model.encode(src, lengths, packed=True), model.encode(src, lengths, packed=False)
    mask = packed["mask"]
    torch.testing.assert_close(packed["memory"][mask], unpacked["memory"][mask])
    torch.testing.assert_close(packed["hidden"], unpacked["hidden"])
    _, attention, _ = model.decode_step(torch.full((4,), 2), unpacked)
    torch.testing.assert_close(attention.sum(-1), torch.ones(4))
    assert (attention[~mask] == 0).all()
    # a sentence's states do not depend on how much padding its batch has
    alone = model.encode(src[1:2, :2], lengths[1:2], packed=False)
    torch.testing.assert_close(alone["memory"][0], unpacked["memory"][1, :2])


def test_batches_respect_the_token_budget_and_cover_the_corpus():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 40, 500), rng.integers(1, 40, 500)
    batches = make_batches(src, tgt, 300, seed=1, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for b in batches:
        assert len(b) * max(src[b].max(), tgt[b].max() + 1) <= 300 or len(b) == 1
    assert [b.tolist() for b in batches] == [b.tolist() for b in make_batches(src, tgt, 300, 1, 0)]


def test_training_learns_and_writes_its_artefacts(tiny_checkpoint):
    out, best = tiny_checkpoint
    log = [json.loads(line) for line in (out / "valid_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [20, 40]
    assert log[-1]["valid_loss"] < log[0]["valid_loss"]
    for name in ("learning_curve.png", "attention/valid0.png", "last.pt", "best.pt"):
        assert (out / name).read_bytes()[:4] in (b"\x89PNG", b"PK\x03\x04")
    ckpt = checkpoint.load(best)
    assert ckpt["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert ckpt["model_config"]["rnn_type"] == "gru" and ckpt["step"] in (20, 40)
    assert len(ckpt["spm"]["src"]["sha256"]) == 64


def test_resume_continues_identically(tmp_path, tiny_files):
    straight = Trainer(load_config(None, tiny_overrides(tiny_files, tmp_path / "a", steps=12)))
    straight.train()
    first = Trainer(load_config(None, tiny_overrides(tiny_files, tmp_path / "b", steps=12)
                                + ["train.max_steps=7"]))
    first.train()  # stops at step 7, having saved last.pt at steps 5 and 6 (valid) ... and 7
    resumed = Trainer(load_config(None, tiny_overrides(tiny_files, tmp_path / "b", steps=12)))
    assert resumed.step == 7
    resumed.train()
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_distributed_training_keeps_replicas_in_sync(tmp_path, tiny_files):
    overrides = tiny_overrides(tiny_files, tmp_path / "ddp", steps=6)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), *overrides],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    digests = [(tmp_path / f"rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert (tmp_path / "ddp" / "best.pt").exists()


def test_two_ddp_ranks_train_like_one_process_with_their_union(tiny_files, tmp_path):
    """Loss normalised by the global token count: 2 ranks with batches B1, B2 give the losses and
    weights of one process with B1+B2 (dropout and augmentation off: the only randomness)."""
    overrides = tiny_overrides(tiny_files, tmp_path / "run", steps=4) + [
        "model.dropout=0.0", "augment.lower=0", "augment.upper=0", "augment.title=0", "augment.strip_punct=0",
        "augment.placeholders=0", "train.batch_tokens=120"]
    worker = str(ROOT / "tests" / "ddp_equivalence_worker.py")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          worker, str(tmp_path), "4", *overrides], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, worker, str(tmp_path), "4", *overrides],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    losses = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("ddp", "single")}
    assert len(losses["ddp"]) == 4 and losses["ddp"][0] != losses["ddp"][-1]
    assert np.allclose(losses["ddp"], losses["single"], rtol=1e-5, atol=1e-6), losses
    weights = {name: torch.load(tmp_path / f"{name}.pt") for name in ("ddp", "single")}
    for key, value in weights["single"].items():
        assert torch.allclose(weights["ddp"][key], value, atol=1e-5), key


def test_streamed_pairs_are_each_ranks_share_and_errors_name_the_line(tmp_path):
    from training.data import DataError
    from training.stream import read_pairs, sample_pairs, windows

    src, tgt = tmp_path / "a.de.gz", tmp_path / "a.en"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.write("".join(f"Satz  {i}\n" for i in range(10)))
    tgt.write_text("".join(f"sentence {i}\n" for i in range(10)))
    assert [s for s, _ in read_pairs(str(src), str(tgt), rank=1, world=3)] == ["Satz 1", "Satz 4", "Satz 7"]
    assert sum(1 for _ in read_pairs(str(src), str(tgt))) == 10
    assert [len(w) for w in windows(read_pairs(str(src), str(tgt)), 4)] == [4, 4, 2]
    sample = sample_pairs(read_pairs(str(src), str(tgt)), 3, seed=1)
    assert len(sample) == 3 and all(s.split()[1] == t.split()[1] for s, t in zip(sample.sources, sample.targets))
    tgt.write_text("".join(f"sentence {i}\n" for i in range(9)))
    with pytest.raises(DataError, match="misaligned corpus: .*a.en ends at line 9"):
        list(read_pairs(str(src), str(tgt)))
    tgt.write_text("".join(f"sentence {i}\n" if i != 5 else "\n" for i in range(10)))
    with pytest.raises(DataError, match=r"a.en:6: empty line"):
        list(read_pairs(str(src), str(tgt)))


def test_streaming_trains_on_a_corpus_of_millions_of_lines_within_a_memory_bound(tiny_files, tmp_path):
    """Two million pairs, 5 steps: the corpus is never held in memory (in memory, its strings
    and token ids alone would take well over a gigabyte)."""
    block_src = tiny_files["src"].read_text(encoding="utf-8")
    block_tgt = tiny_files["tgt"].read_text(encoding="utf-8")
    lines = block_src.count("\n")
    copies = 2_000_000 // lines + 1
    big_src, big_tgt = tmp_path / "big.de", tmp_path / "big.en"
    big_src.write_text(block_src * copies, encoding="utf-8")
    big_tgt.write_text(block_tgt * copies, encoding="utf-8")
    overrides = tiny_overrides(tiny_files, tmp_path / "run", steps=5) + [
        f"data.train_src={big_src}", f"data.train_tgt={big_tgt}", "data.streaming=true",
        "data.window=2000", "data.sample=20000", "train.valid_every=5"]
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "stream_worker.py"), *overrides],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["step"] == 5 and result["sampled"] == 20000
    assert lines * copies >= 2_000_000
    # measured here: 310 MB streamed; the same run in memory peaked at 2,320 MB (torch alone: 230 MB)
    assert result["peak_rss_mb"] < 600, result
    assert (tmp_path / "run" / "best.pt").exists()


def test_streaming_counts_the_pairs_it_drops_per_epoch_like_memory_mode(tiny_files, tmp_path):
    quiet = ["augment.lower=0", "augment.upper=0", "augment.title=0", "augment.strip_punct=0",
             "augment.placeholders=0", "augment.fragments=0", "data.max_tokens=6"]
    memory = Trainer(load_config(None, tiny_overrides(tiny_files, tmp_path / "m", steps=3) + quiet))
    streamed = Trainer(load_config(None, tiny_overrides(tiny_files, tmp_path / "s", steps=3) + quiet
                                   + ["data.streaming=true", "data.window=64"]))
    assert memory.dropped > 0
    for epoch in (0, 1, 2):
        list(streamed.epoch_batches(epoch))
        assert streamed.dropped == memory.dropped, epoch


def test_bf16_autocast_trains_on_cpu_and_fp16_asks_for_cuda(tiny_files, tmp_path):
    trainer = Trainer(load_config(None, tiny_overrides(tiny_files, tmp_path / "bf16", steps=3) + ["train.precision=bf16"]))
    loss_sum, tokens = trainer.train_step(*trainer.epoch_batches(0)[0])
    assert np.isfinite(loss_sum) and tokens > 0
    with pytest.raises(checkpoint.CheckpointError, match="fp16 needs CUDA"):
        Trainer(load_config(None, tiny_overrides(tiny_files, tmp_path / "fp16", steps=3) + ["train.precision=fp16"]))


@pytest.mark.skipif(not MULTI30K.exists(), reason=f"Multi30k not found at {MULTI30K}")
def test_multi30k_config_reads_the_shared_corpus():
    cfg = load_config(ROOT / "configs" / "multi30k_de_en.toml")
    corpus = read_parallel(ROOT / cfg.data.train_src, ROOT / cfg.data.train_tgt)
    assert len(corpus) == 29000
    assert "non-commercial" in cfg.data.license


def test_copied_words_are_rare_names_the_targets_copy():
    from training.augment import copied_words

    sources = ["Peter spielt mit einem Ball.", "Ein Mann in Berlin.", "Ein Mann in Berlin.", "Eine Bäckerei.",
               "Ein iPhone liegt hier."] + ["Ein Hund namens Rex."] * 6
    targets = ["Peter plays with a ball.", "A man in Berlin.", "A man in the city.", "A bakery.",
               "An iPhone lies here."] + ["A dog named Rex."] * 6
    # Berlin was once not copied, Bäckerei is translated, Rex is frequent enough to be learnt
    assert copied_words(sources, targets) == ["Peter", "iPhone"]


def test_augmentation_changes_both_sides_alike_and_is_reproducible():
    from training.augment import AugmentRates, augment, build_lexicon

    src = [f"Ein Hund namens Rex{i} rennt über die Wiese {i}." for i in range(400)]
    tgt = [f"A dog named Rex{i} runs across the meadow {i}." for i in range(400)]
    lexicon = build_lexicon(src * 2 + ["Eine Katze schläft."] * 20, tgt * 2 + ["A cat sleeps."] * 20,
                            max_share=1.0)
    rates = AugmentRates(lower=0.2, upper=0.1, strip_punct=0.3, placeholders=0.3)
    a_src, a_tgt = augment(src, tgt, rates, lexicon, seed=1, epoch=0)
    assert (a_src, a_tgt) == augment(src, tgt, rates, lexicon, seed=1, epoch=0)  # resumable
    assert augment(src, tgt, rates, lexicon, seed=1, epoch=1) != (a_src, a_tgt)  # fresh each epoch
    lower = [i for i, s in enumerate(a_src) if s == s.lower()]
    assert 40 < len(lower) < 130 and all(a_tgt[i] == a_tgt[i].lower() for i in lower)
    unpunct = [i for i, s in enumerate(a_src) if not s.endswith(".")]
    assert 70 < len(unpunct) < 180 and all(not a_tgt[i].endswith(".") for i in unpunct)
    with_ph = [i for i, s in enumerate(a_src) if "⦅" in s]
    assert len(with_ph) > 50
    for i in with_ph:  # the same placeholders on both sides, standing for words that translate each other
        assert sorted(re.findall("⦅.⦆", a_src[i])) == sorted(re.findall("⦅.⦆", a_tgt[i]))


def test_cli_progress_is_plain_lines_in_a_log_and_checkpoint_knows_its_words(tmp_path, tiny_files):
    run = subprocess.run([sys.executable, "-m", "training", "train",
                          *[a for o in tiny_overrides(tiny_files, tmp_path / "cli", steps=6) for a in ("--set", o)]],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "train: 6/6 step" in run.stderr
    ckpt = checkpoint.load(tmp_path / "cli" / "best.pt")
    assert "hund" in ckpt["source_words"].split("\n")  # the tiny corpus is lower case


def test_fine_tuning_starts_from_the_given_weights_and_vocabulary(tmp_path, tiny_files, tiny_checkpoint):
    _, best = tiny_checkpoint
    cfg = load_config(None, tiny_overrides(tiny_files, tmp_path / "ft", steps=2) + [f"train.init_from={best}"])
    trainer = Trainer(cfg)
    start = checkpoint.build_model(checkpoint.load(best)).state_dict()
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, start[name]), name
    assert (checkpoint.spm_entry(trainer.spm_paths["src"])["sha256"]
            == checkpoint.load(best)["spm"]["src"]["sha256"])


def test_trimmed_target_vocabulary_keeps_segmentation_and_translations(tmp_path, tiny_files, tiny_checkpoint):
    """`trim-vocab`: a joint vocabulary's target side cut to the pieces the targets use. The
    targets split into the same pieces, the model ranks the pieces as before, and it fine-tunes."""
    from nmt.text import TextProcessor
    from nmt.tokenizer import Tokenizer
    from training.torch_engine import TorchEngine
    from training.trim_vocab import trim_checkpoint

    _, best = tiny_checkpoint
    sizes = trim_checkpoint(str(best), str(tmp_path / "trimmed.pt"), str(tiny_files["src"]), str(tiny_files["tgt"]))
    assert sizes["to"] < sizes["from"]
    original, trimmed = checkpoint.load(best), checkpoint.load(tmp_path / "trimmed.pt")
    assert trimmed["model_config"]["tgt_vocab_size"] == sizes["to"]
    assert trimmed["spm"]["src"]["sha256"] == original["spm"]["src"]["sha256"]

    def load(ckpt, directory):
        paths = checkpoint.write_spm(ckpt, directory)
        source, target = Tokenizer(paths["src"]), Tokenizer(paths["tgt"])
        return TorchEngine(checkpoint.build_model(ckpt)), TextProcessor(source, target, "de"), target

    engine_a, text_a, target_a = load(original, tmp_path / "a")
    engine_b, _, target_b = load(trimmed, tmp_path / "b")
    assert len(target_b) == sizes["to"]
    targets = tiny_files["tgt"].read_text().splitlines()
    assert ([target_a.pieces(ids) for ids in target_a.encode_batch(targets)]
            == [target_b.pieces(ids) for ids in target_b.encode_batch(targets)])
    # the first decoder step: the trimmed model's distribution is the original's over the kept
    # pieces, renormalised (the same ranking, log-probs shifted by one constant a row)
    sources = text_a.source.encode_batch(tiny_files["src"].read_text().splitlines()[:20])
    ids = np.zeros((len(sources), max(map(len, sources))), np.int64)
    for i, row in enumerate(sources):
        ids[i, :len(row)] = row
    lengths, bos = np.array([len(r) for r in sources]), np.full(len(sources), engine_a.bos_id)
    lp_a, top_a, _, _ = engine_a.step(bos, engine_a.encode(ids, lengths), sizes["from"])
    lp_b, top_b, _, _ = engine_b.step(bos, engine_b.encode(ids, lengths), sizes["to"])
    kept = set(target_b.pieces(range(sizes["to"])))
    for row in range(len(sources)):
        pieces_a = target_a.pieces(top_a[row].tolist())
        in_kept = [j for j, p in enumerate(pieces_a) if p in kept]
        assert [pieces_a[j] for j in in_kept] == target_b.pieces(top_b[row].tolist())
        shift = lp_b[row] - lp_a[row, in_kept]
        assert np.allclose(shift, shift[0], atol=1e-4) and shift[0] > 0

    cfg = load_config(None, tiny_overrides(tiny_files, tmp_path / "ft", steps=2)
                      + [f"train.init_from={tmp_path / 'trimmed.pt'}"])
    trainer = Trainer(cfg)
    assert checkpoint.spm_entry(trainer.spm_paths["tgt"])["sha256"] == trimmed["spm"]["tgt"]["sha256"]
    assert len(trainer.tgt_tok) == sizes["to"]
    trainer.train()
    trainer.close()
    tuned = checkpoint.load(tmp_path / "ft" / "best.pt")
    assert tuned["model_config"]["tgt_vocab_size"] == sizes["to"]
    assert tuned["lineage"][-1]["trimmed_target_vocab"] == sizes  # the bundle's card tells it
    assert tuned["lineage"][-1]["step"] == original["step"]
