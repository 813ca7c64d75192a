"""Greedy and beam search, written once in numpy against the engine interface (`nmt.engine`).

`BatchSearch` holds the rows of many independent requests, each with its own options, and advances
all of them by one decoder step at a time. Requests can be added and removed between steps, so the
same object serves a plain loop (`translate_batch`: training validation, evaluation, export checks)
and the service's continuous-batching scheduler.

Beam search follows the usual recipe (e.g. fairseq, Joey NMT): every live hypothesis proposes its
best K+1 tokens; per request the candidates are ranked by total log-probability; an end-of-sentence
among the top K candidates finishes a hypothesis, the best K others stay alive. A request is done
when it has K finished hypotheses or its hypotheses reach the maximum length. Greedy search is the
case K = 1. The bookkeeping is vectorised over all rows of all requests: no per-sentence loop runs
except for hypotheses that finish.

Hypotheses are ranked by ``log_prob / lp(length) + cp`` with the GNMT length penalty
``lp = ((5 + length) / 6) ** alpha`` (Wu et al. 2016, eq. 14), length counting the end-of-sentence,
and the coverage penalty ``cp = beta * sum_i log(min(sum_j a_ji, 1))`` over source positions i, the
attention itself telling which source words a hypothesis left untranslated or used too often.

Guards against runaway output, per request:
- ``max_length_factor``/``max_length_constant``: at most ``factor * source tokens + constant``
  tokens (Marian's --max-length-factor), never above ``max_length``;
- ``no_repeat_ngram_size``: no n-gram twice in one hypothesis (CTranslate2, Joey NMT);
- ``repetition_penalty``: log-probabilities of tokens already generated are multiplied by it (> 1
  makes them less likely; CTRL, Keskar et al. 2019).
The engine returns only the top-k tokens of a step; a guard only lowers scores, so asking for k plus
the number of tokens a row may lose keeps the search exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nmt.engine import Engine, State


@dataclass(frozen=True)
class SearchOptions:
    """Decoding options of one request. ``beam_size`` 1 is greedy search."""

    beam_size: int = 1
    num_hypotheses: int = 1
    length_penalty: float = 1.0
    min_length: int = 0
    max_length: int = 100
    return_attention: bool = False
    max_length_factor: float = 0.0  # 0: no bound relative to the source
    max_length_constant: int = 10
    no_repeat_ngram_size: int = 0  # 0: off
    repetition_penalty: float = 1.0  # 1: off
    coverage_penalty: float = 0.0  # beta of the GNMT coverage penalty; 0: off
    use_shortlist: bool = False  # engines with a vocabulary shortlist restrict the output to it

    def length_limit(self, src_length: int) -> int:
        """The most tokens this request may generate for a source of `src_length` tokens (never
        fewer than an explicit min_length)."""
        if self.max_length_factor <= 0:
            return self.max_length
        bound = int(self.max_length_factor * src_length + self.max_length_constant)
        return max(1, self.min_length, min(self.max_length, bound))

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")
        if not 1 <= self.num_hypotheses <= self.beam_size:
            raise ValueError(
                f"num_hypotheses must be between 1 and beam_size ({self.beam_size}), "
                f"got {self.num_hypotheses}"
            )
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}")
        if not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"min_length must be between 0 and max_length, got {self.min_length}")
        if self.max_length_factor < 0 or self.max_length_constant < 0:
            raise ValueError("max_length_factor and max_length_constant must be >= 0")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if not self.repetition_penalty >= 1.0:
            raise ValueError(f"repetition_penalty must be >= 1, got {self.repetition_penalty}")
        if not self.coverage_penalty >= 0.0:
            raise ValueError(f"coverage_penalty must be >= 0, got {self.coverage_penalty}")


@dataclass
class Hypothesis:
    token_ids: list[int]  # without the end-of-sentence
    score: float  # log_prob / length penalty: what hypotheses are ranked by
    log_prob: float  # sum of token log-probabilities (end-of-sentence included when emitted)
    attention: np.ndarray | None = None  # (len(token_ids), source length), rows sum to 1


@dataclass(eq=False)
class SearchRequest:
    """One source sentence being decoded (token ids, no end-of-sentence); `hypotheses` is filled
    when it finishes. The service's scheduler jobs are SearchRequests: one object per sentence."""

    src_ids: list[int]
    options: SearchOptions = field(default_factory=SearchOptions)
    hypotheses: list[Hypothesis] = field(default_factory=list, init=False)
    done: bool = field(default=False, init=False)

    @property
    def src_length(self) -> int:
        return len(self.src_ids)


def encoding_groups(requests: list[SearchRequest], size: int = 8, call_cost: int = 30) -> list[list[SearchRequest]]:
    """How to encode sentences admitted together: an encoder call pads every sentence to its
    longest, so many sentences of mixed lengths go in groups of `size` sorted by length, when that
    saves more padded positions than `call_cost` per extra call (the fixed cost of a call, in
    positions: 32 test sentences in arrival order took 6.7 ms in one call, 4.5 ms in four).
    Sentences sorted already (`translate_batch`) stay one call."""
    if len(requests) < 2 * size:
        return [requests]
    ordered = sorted(requests, key=lambda r: r.src_length)
    groups = [ordered[i:i + size] for i in range(0, len(ordered), size)]
    padded = len(requests) * max(r.src_length for r in requests)
    saved = padded - sum(len(g) * g[-1].src_length for g in groups)
    return groups if saved > call_cost * (len(groups) - 1) else [requests]


def length_penalty(length: np.ndarray | int, alpha: np.ndarray | float) -> np.ndarray:
    return ((5.0 + np.asarray(length, dtype=np.float64)) / 6.0) ** np.asarray(alpha)


class BatchSearch:
    """All live hypotheses of all requests, one row each, grouped by request (in admission order).

    Everything it holds is proportional to what is in flight, never to what it has served: a
    request's slot (the index of its options in the per-slot arrays) is recycled when it leaves,
    and the per-slot arrays only grow to the largest number of requests in flight at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.eos = engine.eos_id
        self._free: list[int] = []  # recycled slots, reused before the arrays grow
        self.requests: dict[int, SearchRequest] = {}
        self.state: State = {}
        # Per row: request slot, last token, total log-prob, generated length, token history
        # (right-aligned: a row's tokens are the last `length` columns) and attention history.
        self.row_slot = np.zeros(0, np.int64)
        self.row_last = np.zeros(0, np.int64)
        self.row_score = np.zeros(0, np.float64)
        self.row_len = np.zeros(0, np.int64)
        self.history = np.zeros((0, 0), np.int64)
        self.attn_history = np.zeros((0, 0, 0), np.float32)
        # Per slot options, looked up by row through row_slot.
        self._beam = np.zeros(0, np.int64)
        self._min_len = np.zeros(0, np.int64)
        self._max_len = np.zeros(0, np.int64)
        self._alpha = np.zeros(0, np.float64)
        self._attn = np.zeros(0, bool)
        self._ngram = np.zeros(0, np.int64)
        self._rep = np.zeros(0, np.float64)
        self._cov = np.zeros(0, np.float64)
        # Per row: attention received by each source position so far (coverage penalty).
        self.coverage = np.zeros((0, 0), np.float32)
        self._finished: dict[int, list[Hypothesis]] = {}
        # Requests in flight that need the general ranking (beam > 1, a guard on): with none, a
        # step takes the greedy shortcut. And those whose score reads `coverage`.
        self._general = 0
        self._covering = 0

    def __len__(self) -> int:
        """Rows in flight (live hypotheses)."""
        return len(self.row_slot)

    @property
    def active(self) -> list[SearchRequest]:
        return list(self.requests.values())

    @property
    def capacity(self) -> int:
        """Length of the per-slot arrays: at most twice the most requests ever in flight at once."""
        return len(self._beam)

    def admit(self, requests: list[SearchRequest]) -> None:
        """Encode the requests' sources (`encoding_groups`) and add their rows.
        If the engine fails, nothing is added and the exception propagates."""
        self.add(*encode_requests(self.engine, requests))

    def _slots_for(self, count: int) -> np.ndarray:
        """Free slots for `count` new requests; the per-slot arrays double when none are left."""
        if len(self._free) < count:
            old = self.capacity
            new = max(2 * old, old + count - len(self._free), 8)
            for name, fill in (("_beam", 0), ("_min_len", 0), ("_max_len", 0), ("_alpha", 0.0),
                               ("_attn", False), ("_ngram", 0), ("_rep", 1.0), ("_cov", 0.0)):
                array = getattr(self, name)
                setattr(self, name, np.concatenate([array, np.full(new - old, fill, array.dtype)]))
            self._free.extend(range(new - 1, old - 1, -1))  # pop() hands out the lowest first
        return np.array([self._free.pop() for _ in range(count)], np.int64)

    def _release(self, slot: int) -> None:
        self._count(self.requests[slot].options, -1)
        del self.requests[slot]
        del self._finished[slot]
        self._free.append(slot)

    def add(self, requests: list[SearchRequest], state: State) -> None:
        """Add requests whose sources `state` encodes (one row each, in the same order), as
        `encode_requests` returns them (possibly encoded on another thread, meanwhile)."""
        if not requests:
            return
        slots = self._slots_for(len(requests))
        for slot, request in zip(slots.tolist(), requests):
            self._count(request.options, +1)
            self.requests[slot] = request
            self._finished[slot] = []
            o = request.options
            self._beam[slot], self._min_len[slot] = o.beam_size, o.min_length
            self._max_len[slot] = o.length_limit(request.src_length)
            self._alpha[slot], self._attn[slot] = o.length_penalty, o.return_attention
            self._ngram[slot], self._rep[slot] = o.no_repeat_ngram_size, o.repetition_penalty
            self._cov[slot] = o.coverage_penalty
        n = len(requests)
        self.state = self.engine.merge([self.state, state])
        width_now = self.engine.source_width(self.state)
        coverage = np.zeros((len(self.row_slot) + n, width_now), np.float32)
        keep = min(width_now, self.coverage.shape[1])
        coverage[: len(self.coverage), :keep] = self.coverage[:, :keep]
        self.coverage = coverage
        self.row_slot = np.concatenate([self.row_slot, slots])
        self.row_last = np.concatenate([self.row_last, np.full(n, self.engine.bos_id, np.int64)])
        self.row_score = np.concatenate([self.row_score, np.zeros(n)])
        self.row_len = np.concatenate([self.row_len, np.zeros(n, np.int64)])
        width = self.history.shape[1]
        self.history = np.concatenate([self.history, np.zeros((n, width), np.int64)])
        # Attention history is kept (source axis non-empty) only while some request asks for it.
        src = width_now if self._attn[self.row_slot].any() else 0
        old = self.attn_history
        attn = np.zeros((len(self.row_slot), width, src), np.float32)
        if len(old) and old.shape[2]:
            attn[: len(old), :, : old.shape[2]] = old
        self.attn_history = attn

    def _count(self, o: SearchOptions, change: int) -> None:
        general = o.beam_size > 1 or o.no_repeat_ngram_size > 0 or o.repetition_penalty != 1.0
        self._general += change * general
        self._covering += change * (o.coverage_penalty > 0)

    def remove(self, requests: list[SearchRequest]) -> None:
        """Drop requests (cancelled, deadline passed) together with all their rows."""
        targets = set(requests)  # identity: requests compare by object (eq=False)
        gone = {slot for slot, r in self.requests.items() if r in targets}
        if not gone:
            return
        for slot in gone:
            self._release(slot)
        keep = np.flatnonzero(~np.isin(self.row_slot, list(gone)))
        self._keep_rows(keep, self.row_last[keep], self.row_score[keep], None, None)

    fast_greedy = True  # the shortcut below when every row is greedy and no guard is on (tests compare both)

    def advance(self) -> list[SearchRequest]:
        """Run one decoder step for every row; return the requests that finished in it."""
        if not len(self):
            return []
        if self.fast_greedy and not self._general:  # all greedy, no guard: one row per request, no ranking
            self.state = self.engine.prepare(self.state)
            top_lp, top_ids, attention, self.state = self.engine.step(self.row_last, self.state, 2)
            return self._advance_greedy(top_lp, top_ids, attention)
        beam = self._beam[self.row_slot]
        banned, penalized, extra = self._guards()
        k = int(beam.max()) + 1 + extra
        self.state = self.engine.prepare(self.state)
        top_lp, top_ids, attention, new_state = self.engine.step(self.row_last, self.state, k)
        self.state = new_state
        lp = top_lp.astype(np.float64)
        if penalized is not None:
            hit = _row_isin(top_ids, penalized)
            lp = np.where(hit, lp * self._rep[self.row_slot][:, None], lp)
        if banned is not None:
            lp[_row_isin(top_ids, banned)] = -np.inf
        if extra:  # the guards may have pushed better candidates down: re-sort each row
            order = np.argsort(-lp, axis=1, kind="stable")
            lp = np.take_along_axis(lp, order, axis=1)
            top_ids = np.take_along_axis(top_ids, order, axis=1)
        k = lp.shape[1]
        lp[np.arange(k)[None, :] >= (beam + 1)[:, None]] = -np.inf
        too_short = self.row_len < self._min_len[self.row_slot]
        lp[too_short[:, None] & (top_ids == self.eos)] = -np.inf
        cand = (self.row_score[:, None] + lp).ravel()
        n = len(self)
        cand_row = np.repeat(np.arange(n), k)
        cand_tok = top_ids.ravel().astype(np.int64)
        cand_slot = self.row_slot[cand_row]
        # by request, best first; requests stay in the order of their rows (the order they came in),
        # so rows keep their places in the engine's buffers until a request before them leaves
        row_request = np.r_[0, np.cumsum(self.row_slot[1:] != self.row_slot[:-1])]
        order = np.lexsort((-cand, row_request[cand_row]))
        cand, cand_row, cand_tok, cand_slot = cand[order], cand_row[order], cand_tok[order], cand_slot[order]
        starts = np.flatnonzero(np.r_[True, cand_slot[1:] != cand_slot[:-1]])
        sizes = np.diff(np.r_[starts, len(cand)])
        rank = np.arange(len(cand)) - np.repeat(starts, sizes)
        valid = np.isfinite(cand)
        is_eos = cand_tok == self.eos
        K = self._beam[cand_slot]
        ended = valid & is_eos & (rank < K)
        cont = valid & ~is_eos
        cont_rank = np.cumsum(cont) - 1
        cont_rank = cont_rank - np.repeat(np.r_[0, np.cumsum(cont)][starts], sizes)
        alive = cont & (cont_rank < K)
        new_len = self.row_len[cand_row] + 1
        at_max = alive & (new_len >= self._max_len[cand_slot])

        for i in np.flatnonzero(ended | at_max).tolist():
            self._finish(cand_row[i], cand_tok[i], cand[i], bool(ended[i]), attention)
        keep = np.flatnonzero(alive & ~at_max)
        live_slots = set(cand_slot[keep].tolist())
        done_slots = [slot for slot in self.requests
                      if len(self._finished[slot]) >= self._beam[slot] or slot not in live_slots]
        done = [self._complete(slot) for slot in done_slots]
        for slot in done_slots:
            self._release(slot)
        if done_slots:
            keep = keep[~np.isin(cand_slot[keep], done_slots)]
            keep = keep[self._holes_filled_by_requests(cand_slot[keep])]
        self._keep_rows(cand_row[keep], cand_tok[keep], cand[keep], cand_row[keep], attention)
        return done

    def _advance_greedy(self, top_lp, top_ids, attention) -> list[SearchRequest]:
        """`advance` for greedy rows: the best candidate of each row, the end of sentence masked
        while a row is shorter than its min_length. Same results as the general ranking (tested),
        a quarter of its numpy calls: at batch 1 the bookkeeping is a third of a step. A step
        where no row ends (most of them) moves no row: `_extend` appends in place of `_keep_rows`."""
        short = self.row_len < self._min_len[self.row_slot]
        if short.any():
            lp = top_lp.astype(np.float64)
            lp[short[:, None] & (top_ids == self.eos)] = -np.inf
            best = np.argmax(lp, axis=1)
            rows = np.arange(len(self))
            token, step_lp = top_ids[rows, best], lp[rows, best]
        else:  # the engine's top-k is sorted: the best is the first
            token, step_lp = top_ids[:, 0], top_lp[:, 0].astype(np.float64)
        token = token.astype(np.int64)
        score = self.row_score + step_lp
        valid = np.isfinite(score)
        ended = valid & (token == self.eos)
        alive = valid & ~ended
        at_max = alive & (self.row_len + 1 >= self._max_len[self.row_slot])
        if alive.all() and not at_max.any():
            self._extend(token, score, attention)
            return []
        for i in np.flatnonzero(ended | at_max).tolist():
            self._finish(i, token[i], score[i], bool(ended[i]), attention)
        keep = _holes_filled(alive & ~at_max)
        leaving = set(self.row_slot[np.flatnonzero(~(alive & ~at_max))].tolist())
        done_slots = [slot for slot in self.requests if slot in leaving]
        done = [self._complete(slot) for slot in done_slots]
        for slot in done_slots:
            self._release(slot)
        self._keep_rows(keep, token[keep], score[keep], keep, attention)
        return done

    # -- internals ---------------------------------------------------------------------------

    def _guards(self) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """Tokens each row may not emit (no_repeat_ngram_size) and tokens whose log-probability is
        penalised (repetition_penalty), as (rows, m) arrays padded with -1; and how many more
        candidates to ask the engine for so that the top-k stays exact."""
        width = self.history.shape[1]
        if not width:
            return None, None, 0
        n_gram = self._ngram[self.row_slot]
        rep = self._rep[self.row_slot]
        banned = penalized = None
        extra = 0
        if (rep != 1.0).any():
            mask = (np.arange(width)[None, :] >= width - self.row_len[:, None]) & (rep != 1.0)[:, None]
            penalized = np.where(mask, self.history, -1)
            extra += int(mask.sum(axis=1).max())
        if (n_gram > 0).any():
            banned = np.full((len(self), width), -1, np.int64)  # at most width - n + 1 windows a row
            for n in np.unique(n_gram[n_gram > 0]).tolist():
                rows = np.flatnonzero((n_gram == n) & (self.row_len >= n))
                if not len(rows) or width < n:
                    continue
                hist = self.history[rows]
                windows = np.lib.stride_tricks.sliding_window_view(hist, n, axis=1)  # (r, W-n+1, n)
                prefix = hist[:, width - n + 1:] if n > 1 else hist[:, :0]
                match = (windows[:, :, : n - 1] == prefix[:, None, :]).all(axis=2)
                # a window must lie inside the row's tokens (history is right-aligned)
                start_ok = np.arange(windows.shape[1])[None, :] >= (width - self.row_len[rows])[:, None]
                match &= start_ok
                banned[rows, : windows.shape[1]] = np.where(match, windows[:, :, n - 1], -1)
            extra += int((banned >= 0).sum(axis=1).max())
        return banned, penalized, extra

    def _holes_filled_by_requests(self, kept_slots: np.ndarray) -> np.ndarray:
        """An order of the kept rows (grouped by request, requests in the order of their rows) in
        which a request that left has its place taken by the last request whose rows fit it exactly,
        instead of every request after it moving up: the engine then moves the rows of one request
        (`_holes_filled` for whole requests)."""
        starts = np.flatnonzero(np.r_[True, self.row_slot[1:] != self.row_slot[:-1]])
        old = list(zip(self.row_slot[starts].tolist(), np.diff(np.r_[starts, len(self)]).tolist()))
        slots, sizes = np.unique(kept_slots, return_counts=True)
        new_size = dict(zip(slots.tolist(), sizes.tolist()))
        survivors = [slot for slot, _ in old if slot in new_size]
        order, placed, last = [], set(), len(survivors) - 1
        for slot, size in old:
            if slot in placed:
                continue
            if slot in new_size:
                order.append(slot)
                placed.add(slot)
                continue
            while last >= 0 and survivors[last] in placed:
                last -= 1
            if last >= 0 and new_size[survivors[last]] == size:
                order.append(survivors[last])
                placed.add(survivors[last])
        order += [slot for slot in survivors if slot not in placed]
        rank = np.zeros(self.capacity, np.int64)
        rank[order] = np.arange(len(order))
        return np.argsort(rank[kept_slots], kind="stable")

    def _keep_rows(self, rows, last, score, parents, attention) -> None:
        """Make `rows` the new rows; when `parents` is given, each appends `last` to its history."""
        slots = self.row_slot[rows]
        same_layout = np.array_equal(slots, self.row_slot)
        # a new row takes the sentence entries of its own place when the same request was there
        m = min(len(rows), len(self.row_slot))
        sentence_rows = np.array(rows)
        stays = np.flatnonzero(slots[:m] == self.row_slot[:m])
        sentence_rows[stays] = stays
        self.state = self.engine.reorder(self.state, rows, sentence_rows) if len(rows) else {}
        self.row_slot = slots
        self.row_score = np.asarray(score, np.float64)
        self.row_last = np.asarray(last, np.int64)
        history = self.history[rows]
        attn_history = self.attn_history[rows]
        coverage = self.coverage[rows]
        if parents is not None:
            coverage = coverage + attention[parents]
            self.row_len = self.row_len[rows] + 1
            history = np.concatenate([history, self.row_last[:, None]], axis=1)
            step_attn = (attention[parents][:, None, :] if attn_history.shape[2]
                         else np.zeros((len(rows), 1, 0), np.float32))
            attn_history = np.concatenate([attn_history, step_attn], axis=1)
        else:
            self.row_len = self.row_len[rows]
        # Right-aligned histories only need as many columns as the longest live row.
        width = int(self.row_len.max()) if len(self.row_len) else 0
        self.history = history[:, history.shape[1] - width:]
        attn_history = attn_history[:, attn_history.shape[1] - width:]
        if not same_layout and len(rows):
            self.state = self.engine.trim(self.state)
        width_now = self.engine.source_width(self.state)
        self.coverage = coverage[:, :width_now] if self.state else coverage
        tracking = self.state and attn_history.shape[2] and self._attn[self.row_slot].any()
        self.attn_history = attn_history[:, :, :width_now] if tracking else attn_history[:, :, :0]
        if not len(rows):
            self.state = {}

    def _extend(self, last, score, attention) -> None:
        """Every row lives on with one more token: `_keep_rows` for the same rows in the same
        order, without its gathers (the state stays as the step returned it)."""
        self.row_last, self.row_score = last, score
        self.row_len = self.row_len + 1
        self.history = np.concatenate([self.history, last[:, None]], axis=1)
        if self._covering:  # only rows with a coverage penalty read it: others may keep stale sums
            self.coverage = self.coverage + attention
        if self.attn_history.shape[2]:
            self.attn_history = np.concatenate([self.attn_history, attention[:, None, :]], axis=1)
        else:
            self.attn_history = np.empty((len(last), self.history.shape[1], 0), np.float32)

    def _finish(self, row, token, log_prob, with_eos, attention) -> None:
        slot = int(self.row_slot[row])
        length = int(self.row_len[row])
        tokens = self.history[row, self.history.shape[1] - length:].tolist()
        attn = None
        if self._attn[slot]:
            attn = self.attn_history[row, self.attn_history.shape[1] - length:]
        if not with_eos:  # reached the maximum length: the candidate token belongs to the output
            tokens.append(int(token))
            if attn is not None:
                attn = np.concatenate([attn, attention[row][None]], axis=0)
        scored_length = len(tokens) + (1 if with_eos else 0)
        score = float(log_prob / length_penalty(scored_length, self._alpha[slot]))
        if self._cov[slot]:
            src_length = self.requests[slot].src_length
            received = self.coverage[row, :src_length] + attention[row, :src_length]
            score += float(self._cov[slot] * np.log(np.clip(received, 1e-6, 1.0)).sum())
        if attn is not None:
            attn = attn[:, : self.requests[slot].src_length].copy()
        self._finished[slot].append(Hypothesis(tokens, score, float(log_prob), attn))

    def _complete(self, slot: int) -> SearchRequest:
        request = self.requests[slot]
        ranked = sorted(self._finished[slot], key=lambda h: -h.score)
        request.hypotheses = ranked[: request.options.num_hypotheses]
        request.done = True
        return request


def _holes_filled(staying: np.ndarray) -> np.ndarray:
    """The rows that stay, each in its place, the places of the rows that leave taken by the
    last rows that stay: only those move in the engine's buffers (greedy rows need no order)."""
    n = int(staying.sum())
    rows = np.arange(n)
    holes = np.flatnonzero(~staying[:n])
    if len(holes):
        rows[holes] = n + np.flatnonzero(staying[n:])
    return rows


def _row_isin(ids: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """ids (N, k), sets (N, m) padded with -1 -> (N, k): is ids[r, j] in sets[r]?"""
    if not sets.shape[1]:
        return np.zeros(ids.shape, bool)
    return (ids[:, :, None] == sets[:, None, :]).any(axis=2)


def encode_requests(engine: Engine, requests: list[SearchRequest]) -> tuple[list[SearchRequest], State]:
    """The requests with a source, in the order of their rows, and the state that encodes them
    (in `encoding_groups`). Touches no search: a server may encode on one thread while another
    steps the batch."""
    requests = [r for r in requests if r.src_ids]
    if not requests:
        return [], {}
    groups = encoding_groups(requests)
    states = []
    for group in groups:
        ids, lengths = pad_batch([r.src_ids for r in group])
        short = np.array([r.options.use_shortlist for r in group])
        states.append(engine.encode(ids, lengths, short) if short.any() else engine.encode(ids, lengths))
    return [r for g in groups for r in g], states[0] if len(states) == 1 else engine.merge(states)


def translate_batch(
    engine: Engine,
    src_ids: list[list[int]],
    options: SearchOptions | list[SearchOptions] = SearchOptions(),
    max_batch: int = 64,
    progress: str | None = None,
) -> list[list[Hypothesis]]:
    """Decode sentences (token ids, no end-of-sentence) in static batches of sentences of similar
    length; the plain-loop driver of `BatchSearch`. Returns the n-best list of every sentence.
    `progress`: show a progress bar with this description (on stderr)."""
    if isinstance(options, SearchOptions):
        options = [options] * len(src_ids)
    results: list[list[Hypothesis]] = [[] for _ in src_ids]
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    order = [i for i in order if src_ids[i]]  # empty sources translate to nothing
    bar = None
    if progress:
        from nmt.progress import progress as progress_bar

        bar = progress_bar(total=len(order), desc=progress, unit="sentence", leave=False)
    for start in range(0, len(order), max_batch):
        chunk = order[start : start + max_batch]
        search = BatchSearch(engine)
        requests = [SearchRequest(src_ids[i], options[i]) for i in chunk]
        search.admit(requests)
        while len(search):
            search.advance()
        for i, request in zip(chunk, requests):
            results[i] = request.hypotheses
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return results


def pad_batch(sequences: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in sequences], np.int64)
    ids = np.full((len(sequences), max(int(lengths.max()), 1)), pad_id, np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
    return ids, lengths
