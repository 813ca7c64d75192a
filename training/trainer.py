"""The training loop: teacher forcing, Adam, clipping, label smoothing, LR decay on plateau,
token-bucketed batches, validation BLEU with the serving search, checkpoints, exact resume,
early stopping, DDP under torchrun (gloo on CPU, NCCL on GPUs; the loss normalised by the global
token count), optional bf16/fp16 autocast, and corpora streamed from disk (`training/stream.py`)."""

from __future__ import annotations

import datetime

import itertools
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import sacrebleu
import torch
import torch.distributed as dist

from nmt.heatmap import save_heatmap
from nmt.progress import progress, write
from nmt.search import SearchOptions, translate_batch
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from training import checkpoint
from training.augment import AugmentRates, augment, build_lexicon, copied_words, truecase_table
from training.config import Config, as_dict
from training.data import clean, read_corpus
from training.stream import read_pairs, sample_pairs, windows
from training.model import ModelConfig, Seq2Seq
from training.plots import learning_curve
from training.torch_engine import TorchEngine
from training.vocab import train_sentencepiece


def make_batches(src_lens: np.ndarray, tgt_lens: np.ndarray, batch_tokens: int, seed: int,
                 epoch: int) -> list[np.ndarray]:
    """Group pairs of similar length so that (longest side + 1) * pairs <= batch_tokens; the
    batches come in a random order that depends only on (seed, epoch), so resumption is exact."""
    rng = np.random.default_rng([seed, epoch])
    order = np.lexsort((rng.random(len(src_lens)), tgt_lens, src_lens))
    batches, current, longest = [], [], 0
    for i in order.tolist():
        size = max(longest, int(src_lens[i]), int(tgt_lens[i]) + 1)
        if current and size * (len(current) + 1) > batch_tokens:
            batches.append(np.array(current))
            current, size = [], max(int(src_lens[i]), int(tgt_lens[i]) + 1)
        current.append(i)
        longest = size
    if current:
        batches.append(np.array(current))
    rng.shuffle(batches)
    return batches


def collate(src: list[list[int]], tgt: list[list[int]]):
    """-> src (B,S), src_lengths (B,), tgt_in (B,T) = BOS + y, tgt_out (B,T) = y + EOS."""
    b = len(src)
    s_len = torch.tensor([len(x) for x in src])
    t_len = max(len(y) for y in tgt) + 1
    src_t = torch.full((b, int(s_len.max())), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((b, t_len), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((b, t_len), PAD_ID, dtype=torch.long)
    for i, (x, y) in enumerate(zip(src, tgt)):
        src_t[i, : len(x)] = torch.tensor(x)
        tgt_in[i, : len(y) + 1] = torch.tensor([BOS_ID] + y)
        tgt_out[i, : len(y) + 1] = torch.tensor(y + [EOS_ID])
    return src_t, s_len, tgt_in, tgt_out


class Trainer:
    def __init__(self, cfg: Config, resume: bool = True) -> None:
        self.cfg = cfg
        self.out = Path(cfg.train.out_dir)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = self._device(cfg.train.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.main = self.rank == 0
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.out.mkdir(parents=True, exist_ok=True)
        self._prepare_data()
        last = self.out / "last.pt"
        ckpt = checkpoint.load(last) if resume and last.exists() else None
        torch.manual_seed(cfg.train.seed)
        self.model = Seq2Seq(ModelConfig(
            src_vocab_size=len(self.src_tok), tgt_vocab_size=len(self.tgt_tok), pad_id=PAD_ID,
            **as_dict(cfg)["model"])).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr)
        if cfg.train.precision == "fp16" and self.device.type != "cuda":
            raise checkpoint.CheckpointError("train.precision = fp16 needs CUDA; use bf16 on CPUs")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.precision == "fp16")
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="max", factor=cfg.train.lr_decay, patience=cfg.train.lr_patience,
            min_lr=cfg.train.min_lr)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_bleu, self.bad_validations, self.history = -1.0, 0, []
        self.elapsed = 0.0
        if ckpt is not None:
            self._restore(ckpt)
        elif cfg.train.init_from:
            start = checkpoint.build_model(checkpoint.load(cfg.train.init_from))
            self.model.load_state_dict(start.state_dict())
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = (torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
                    if self.world > 1 else self.model)

    def _device(self, wanted: str) -> torch.device:
        if wanted == "cuda" and not torch.cuda.is_available():
            raise checkpoint.CheckpointError("train.device = cuda, but no CUDA device is available")
        if wanted == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())

    # -- data --------------------------------------------------------------------------------

    def _prepare_data(self) -> None:
        d, v, a = self.cfg.data, self.cfg.vocab, self.cfg.augment
        if d.streaming:  # what needs the whole corpus sees a uniform sample of it
            train = sample_pairs(read_pairs(d.train_src, d.train_tgt, d.train_tsv, normalize_text=d.normalize),
                                 d.sample, self.cfg.train.seed)
        else:
            train = clean(read_corpus(d.train_src, d.train_tgt, d.train_tsv), d.normalize, d.dedupe)
        self.valid = clean(read_corpus(d.valid_src, d.valid_tgt, d.valid_tsv), d.normalize)
        self.train_text = train
        self.rates = AugmentRates(a.lower, a.upper, a.title, a.strip_punct, a.placeholders,
                                  a.max_placeholders, a.fragments)
        self.lexicon = (build_lexicon(train.sources, train.targets)
                        if a.placeholders > 0 or a.fragments > 0 else {})
        self.word_lexicon = (build_lexicon(train.sources, train.targets, max_share=1.0)
                             if a.fragments > 0 else {})
        self.source_words = truecase_table(train.sources)
        self.copied_words = copied_words(train.sources, train.targets)
        self.lineage: list[dict] = []  # the checkpoints this run started from (fine-tuning)
        names = {"src": f"spm.{d.src_lang}.model", "tgt": f"spm.{d.tgt_lang}.model"}
        if v.joint:
            names = {"src": "spm.joint.model", "tgt": "spm.joint.model"}
        paths = {side: self.out / name for side, name in names.items()}
        if self.cfg.train.init_from:  # fine-tuning keeps the vocabulary the weights were trained with
            start = checkpoint.load(self.cfg.train.init_from)
            paths = {side: self.out / entry["name"] for side, entry in start["spm"].items()}
            self.lineage = checkpoint.lineage(start, self.cfg.train.init_from)
            if self.main and not all(p.exists() for p in paths.values()):
                checkpoint.write_spm(start, self.out)
        if self.main and not all(p.exists() for p in paths.values()):
            # the vocabulary sees the corpus as it is and once as augmented (upper-case pieces)
            aug_src, aug_tgt = self._augmented(10 ** 6)
            sources, targets = train.sources + aug_src, train.targets + aug_tgt
            if v.joint:
                train_sentencepiece(sources + targets, paths["src"], v.size, v.type)
            else:
                train_sentencepiece(sources, paths["src"], v.size, v.type)
                train_sentencepiece(targets, paths["tgt"], v.size, v.type)
        if self.world > 1:
            dist.barrier()
        self.spm_paths = paths
        self.src_tok, self.tgt_tok = Tokenizer(paths["src"]), Tokenizer(paths["tgt"])
        self._loaded_epoch: int | None = None
        self.train_src: list[list[int]] = []
        self.dropped = 0
        if not d.streaming:
            self._load_epoch(0)

    def _augmented(self, epoch: int) -> tuple[list[str], list[str]]:
        return augment(self.train_text.sources, self.train_text.targets, self.rates, self.lexicon,
                       self.cfg.train.seed, epoch, self.word_lexicon)

    def _load_epoch(self, epoch: int) -> None:
        """Token ids of the epoch's (augmented) training pairs; pairs too long are dropped."""
        if self._loaded_epoch == epoch:
            return
        sources, targets = self._augmented(epoch)
        src, tgt = self.src_tok.encode_batch(sources), self.tgt_tok.encode_batch(targets)
        limit = self.cfg.data.max_tokens
        keep = [i for i in range(len(src)) if 0 < len(src[i]) <= limit and 0 < len(tgt[i]) <= limit]
        self.train_src = [src[i] for i in keep]
        self.train_tgt = [tgt[i] for i in keep]
        self.dropped = len(src) - len(keep)
        self.src_lens = np.array([len(x) for x in self.train_src])
        self.tgt_lens = np.array([len(y) for y in self.train_tgt])
        self._loaded_epoch = epoch

    def epoch_batches(self, epoch: int):
        """This rank's batches of an epoch, as (source ids, target ids) lists: in memory, every
        rank gets the same number; streamed, `_in_step` stops all ranks when one runs out."""
        if self.cfg.data.streaming:
            return self._streamed_batches(epoch)
        self._load_epoch(epoch)
        batches = make_batches(self.src_lens, self.tgt_lens, self.cfg.train.batch_tokens,
                               self.cfg.train.seed, epoch)
        usable = len(batches) - len(batches) % self.world  # every rank takes the same number of steps
        return [([self.train_src[i] for i in b], [self.train_tgt[i] for i in b])
                for b in batches[self.rank:usable:self.world]]

    def _streamed_batches(self, epoch: int):
        d, limit = self.cfg.data, self.cfg.data.max_tokens
        self.dropped = 0  # this epoch's, as in memory (it grew with every epoch)
        pairs = read_pairs(d.train_src, d.train_tgt, d.train_tsv, self.rank, self.world, d.normalize)
        for number, chunk in enumerate(windows(pairs, d.window)):
            key = epoch * 1_000_003 + number  # augmentation and shuffling differ per window and epoch
            sources, targets = augment([s for s, _ in chunk], [t for _, t in chunk], self.rates, self.lexicon,
                                       self.cfg.train.seed, key, self.word_lexicon)
            src, tgt = self.src_tok.encode_batch(sources), self.tgt_tok.encode_batch(targets)
            keep = [i for i in range(len(src)) if 0 < len(src[i]) <= limit and 0 < len(tgt[i]) <= limit]
            self.dropped += len(src) - len(keep)
            src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
            lens = np.array([len(x) for x in src]), np.array([len(y) for y in tgt])
            for b in make_batches(*lens, self.cfg.train.batch_tokens, self.cfg.train.seed, key):
                yield [src[i] for i in b], [tgt[i] for i in b]

    def _in_step(self, batches):
        """Batches for as long as every rank has one (streamed shares differ by a few batches;
        a rank that stopped alone would leave the others waiting in DDP's all-reduce)."""
        for batch in itertools.chain(batches, [None]):
            if self.world > 1 and self.cfg.data.streaming:
                more = torch.tensor([0 if batch is None else 1], device=self.device)
                dist.all_reduce(more, op=dist.ReduceOp.MIN)
                if not more.item():
                    return
            if batch is None:
                return
            yield batch

    # -- checkpoints ---------------------------------------------------------------------------

    def _payload(self, metrics: dict) -> dict:
        return {
            "model_config": self.model.cfg.to_dict(),
            "model": self.model.state_dict(),
            "spm": {side: checkpoint.spm_entry(p) for side, p in self.spm_paths.items()},
            "special_ids": checkpoint.SPECIAL_IDS,
            "languages": {"source": self.cfg.data.src_lang, "target": self.cfg.data.tgt_lang},
            "source_words": "\n".join(self.source_words),  # what serving treats as known words
            "copied_words": "\n".join(self.copied_words),  # rare names serving protects all the same
            "training_config": as_dict(self.cfg),
            "lineage": self.lineage,
            "data": {"train_pairs": None if self.cfg.data.streaming else len(self.train_src),
                     "streamed": self.cfg.data.streaming, "dropped_pairs": self.dropped,
                     "license": self.cfg.data.license},
            "step": self.step,
            "metrics": metrics,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(),
            "trainer": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                        "best_bleu": self.best_bleu, "bad_validations": self.bad_validations,
                        "elapsed": self.elapsed},
        }

    def _restore(self, ckpt: dict) -> None:
        for side, p in self.spm_paths.items():
            if checkpoint.spm_entry(p)["sha256"] != ckpt["spm"][side]["sha256"]:
                raise checkpoint.CheckpointError(f"{p} differs from the one the checkpoint was trained with")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"])
        t = ckpt["trainer"]
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], t["epoch"], t["batch_in_epoch"]
        self.best_bleu, self.bad_validations = t["best_bleu"], t["bad_validations"]
        self.elapsed = t.get("elapsed", 0.0)
        log = self.out / "valid_log.jsonl"
        if log.exists():
            self.history = [json.loads(line) for line in log.read_text().splitlines()
                            if line.strip() and json.loads(line)["step"] <= self.step]

    def save(self, name: str, metrics: dict) -> None:
        checkpoint.save(self.out / name, self._payload(metrics))

    # -- validation ----------------------------------------------------------------------------

    def validate(self, train_loss: float) -> dict:
        cfg = self.cfg.train
        n = cfg.valid_max_sentences or len(self.valid)
        sources, refs = self.valid.sources[:n], self.valid.targets[:n]
        src_ids = self.src_tok.encode_batch(sources)
        self.model.eval()
        with torch.no_grad():
            losses, tokens = 0.0, 0
            tgt_ids = self.tgt_tok.encode_batch(refs)
            for start in range(0, n, 64):
                batch = self._to_device(collate(src_ids[start:start + 64], tgt_ids[start:start + 64]))
                loss, ntok = self.model.loss(*batch)
                losses, tokens = losses + float(loss), tokens + ntok
        engine = TorchEngine(self.model)
        options = SearchOptions(beam_size=cfg.valid_beam, max_length=cfg.max_output_tokens)
        hyps = translate_batch(engine, src_ids, options, max_batch=128)
        outputs = self.tgt_tok.decode_batch([h[0].token_ids if h else [] for h in hyps])
        bleu = sacrebleu.corpus_bleu(outputs, [refs])
        chrf = sacrebleu.corpus_chrf(outputs, [refs])
        self._heatmaps(src_ids[: cfg.heatmaps])
        self.model.train()
        return {"step": self.step, "epoch": self.epoch, "train_loss": train_loss,
                "valid_loss": losses / max(tokens, 1), "valid_ppl": math.exp(min(losses / max(tokens, 1), 50)),
                "bleu": round(bleu.score, 2), "chrf": round(chrf.score, 2),
                "lr": self.optimizer.param_groups[0]["lr"], "elapsed_s": round(self.elapsed, 1)}

    def _heatmaps(self, src_ids: list[list[int]]) -> None:
        if not src_ids:
            return
        engine = TorchEngine(self.model)
        hyps = translate_batch(engine, src_ids, SearchOptions(return_attention=True,
                               max_length=self.cfg.train.max_output_tokens))
        for i, (src, h) in enumerate(zip(src_ids, hyps)):
            if h and h[0].token_ids:
                save_heatmap(h[0].attention, self.src_tok.pieces(src), self.tgt_tok.pieces(h[0].token_ids),
                             self.out / "attention" / f"valid{i}.png", title=f"step {self.step}")

    def train_step(self, src: list[list[int]], tgt: list[list[int]]) -> tuple[float, int]:
        """One optimizer step on this rank's share of the global batch; -> (summed loss, target
        tokens) of the global batch. The loss is normalised by the global number of target tokens
        (all-reduced over ranks), so N ranks with batches B_1..B_N train exactly like one process
        with their union: DDP averages gradients over ranks, hence the factor `world`."""
        batch = self._to_device(collate(src, tgt))
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            loss_sum, ntok = self.ddp(*batch, label_smoothing=self.cfg.train.label_smoothing)
        totals = torch.stack([loss_sum.detach().float(), torch.tensor(float(ntok), device=loss_sum.device)])
        if self.world > 1:
            dist.all_reduce(totals)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss_sum.float() * self.world / totals[1]).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(totals[0]), int(totals[1])

    def _to_device(self, tensors):
        return tuple(t.to(self.device, non_blocking=True) for t in tensors)

    # -- the loop ------------------------------------------------------------------------------

    def train(self) -> dict:
        cfg = self.cfg.train
        self.model.train()
        bar = progress(total=cfg.max_steps, initial=self.step, disable=not self.main, unit="step",
                       desc="train")
        window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
        started = time.perf_counter() - self.elapsed
        stop = False
        while not stop and self.step < cfg.max_steps:
            for number, (src, tgt) in enumerate(self._in_step(self.epoch_batches(self.epoch))):
                if number < self.batch_in_epoch:  # resumed in the middle of this epoch
                    continue
                loss_sum, ntok = self.train_step(src, tgt)
                self.step += 1
                self.batch_in_epoch += 1
                self.elapsed = time.perf_counter() - started
                window_loss, window_tokens = window_loss + loss_sum, window_tokens + ntok
                now = time.perf_counter()
                bar.update(1)
                bar.set_postfix(epoch=self.epoch, loss=f"{window_loss / window_tokens:.3f}",
                                ppl=f"{math.exp(min(window_loss / window_tokens, 50)):.1f}",
                                tok_s=f"{window_tokens / max(now - window_start, 1e-9):.0f}",
                                refresh=False)
                out_of_time = cfg.max_minutes and self.elapsed >= cfg.max_minutes * 60
                if self.step % cfg.valid_every == 0 or self.step >= cfg.max_steps or out_of_time:
                    stop = self._validate_and_save(window_loss / window_tokens)
                    window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
                    stop = stop or bool(out_of_time)
                elif self.step % cfg.save_every == 0 and self.main:
                    self.save("last.pt", {})
                if stop or self.step >= cfg.max_steps:
                    break
            else:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        bar.close()
        if self.world > 1:  # no rank may exit while rank 0 still writes: gloo aborts on a closed peer
            dist.barrier()
        return {"step": self.step, "best_bleu": self.best_bleu}

    def close(self, finished: bool = True) -> None:
        """Leave the process group. After a normal end the ranks wait for each other first: a rank
        that tore gloo down while another was still saving crashed it ("terminate called without
        an active exception", seen once in the DDP test); after a failure nobody waits."""
        if dist.is_initialized():
            if finished and self.world > 1:
                if dist.get_backend() == "gloo":  # a barrier that gives up (NCCL's cannot)
                    dist.monitored_barrier(timeout=datetime.timedelta(seconds=120))
                else:
                    dist.barrier()
            dist.destroy_process_group()

    def _validate_and_save(self, train_loss: float) -> bool:
        """Validate on rank 0, decide on LR and early stopping there, share the decision."""
        decision = torch.zeros(2)
        if self.main:
            record = self.validate(train_loss)
            improved = record["bleu"] > self.best_bleu
            if improved:
                self.best_bleu, self.bad_validations = record["bleu"], 0
            else:
                self.bad_validations += 1
            self.history.append(record)
            with open(self.out / "valid_log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            write(f"step {self.step}: valid BLEU {record['bleu']:.2f} chrF {record['chrf']:.2f} "
                       f"loss {record['valid_loss']:.3f} lr {record['lr']:.2g}"
                       + (" (best)" if improved else ""))
            learning_curve(self.history, self.out / "learning_curve.png")
            decision[0] = record["bleu"]
            decision[1] = float(self.bad_validations >= self.cfg.train.patience)
        if self.world > 1:
            dist.broadcast(decision, src=0)
        self.scheduler.step(float(decision[0]))
        if self.main:
            metrics = {"valid_bleu": float(decision[0])}
            self.save("last.pt", metrics)
            if self.bad_validations == 0:
                self.save("best.pt", metrics)
        return bool(decision[1])
