"""Python client and command line for the Translator service.

    from service.client import TranslatorClient
    with TranslatorClient("localhost:50051") as client:
        [t] = client.translate(["Ein Mann fährt Fahrrad."], beam_size=5, return_attention=True)
        print(t.text, t.best.attention.shape)

    python -m service.client "Ein Mann fährt Fahrrad." --beam 5 --attention [--plot out.png]
    python -m service.client "Ein Hund bellt. Eine Katze schläft." --sentences   (sentence by sentence)
    python -m service.client --file sentences.de > sentences.en      (progress bar on stderr)

Several replicas: give several addresses (`"10.0.0.5:50051,10.0.0.6:50051"` or a list) or a DNS
name that resolves to all of them (`"dns:///translator-headless:50051"`, Kubernetes' headless
Service). The channel balances calls round_robin over every replica, retries calls answered
UNAVAILABLE (a replica shutting down or shedding load) on another one, and pings idle connections
so that a replica that went away without a word is noticed.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import socket
import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import grpc
import numpy as np

from translation.v1 import translator_pb2 as pb
from translation.v1 import translator_pb2_grpc as pb_grpc


@dataclass
class Hypothesis:
    text: str
    score: float
    log_prob: float
    tokens: list[str]
    attention: np.ndarray | None = None  # (len(tokens), len(source_tokens)) when requested


@dataclass
class Sentence:
    """One sentence of a text: text[start:end], its tokens, its own n-best and attention."""

    start: int
    end: int
    source_tokens: list[str]
    hypotheses: list[Hypothesis]

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]


@dataclass
class Translation:
    hypotheses: list[Hypothesis]
    source_tokens: list[str] = field(default_factory=list)
    sentences: list[Sentence] = field(default_factory=list)

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]

    @property
    def text(self) -> str:
        return self.hypotheses[0].text if self.hypotheses else ""


def _hypotheses(message) -> list[Hypothesis]:
    hyps = []
    for h in message.hypotheses:
        attention = np.array([list(row.weights) for row in h.attention], np.float32) if h.attention else None
        hyps.append(Hypothesis(h.text, h.score, h.log_prob, list(h.tokens), attention))
    return hyps


def _translation(t: pb.Translation) -> Translation:
    sentences = [Sentence(s.source_start, s.source_end, list(s.source_tokens), _hypotheses(s))
                 for s in t.sentences]
    return Translation(_hypotheses(t), list(t.source_tokens), sentences)


SERVICE = "translation.v1.Translator"
# gRPC service config: round_robin over every address the target resolves to; UNAVAILABLE (a
# replica draining or shedding load, or gone) is retried with backoff, on another replica, and so
# is CANCELLED: a replica that stops cancels the calls it had received but not started (seen once
# in tests/test_replicas.py). Translating is idempotent; a call this client cancels is never retried.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": SERVICE}],
        "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"]},
    }],
}
CHANNEL_OPTIONS = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),  # the server accepts pings every 10 s or more
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.dns_min_time_between_resolutions_ms", 5_000),  # new replicas appear within seconds
]


def channel_target(target: str | list[str]) -> str:
    """One gRPC target for one address, several addresses, or a resolver URI (dns:///...)."""
    addresses = [t.strip() for t in (target.split(",") if isinstance(target, str) else target) if t.strip()]
    if not addresses:
        raise ValueError("no server address given")
    if len(addresses) == 1:
        return addresses[0]
    resolved = []  # gRPC's static-list targets (ipv4:/ipv6:) take addresses, so names are resolved here
    for address in addresses:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = ipaddress.ip_address(socket.getaddrinfo(host, int(port), proto=socket.IPPROTO_TCP)[0][4][0])
        resolved.append((ip, port))
    if all(ip.version == 4 for ip, _ in resolved):
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in resolved)
    return "ipv6:" + ",".join(f"[{ip if ip.version == 6 else '::ffff:' + str(ip)}]:{port}" for ip, port in resolved)


class TranslatorClient:
    def __init__(self, target: str | list[str] = "localhost:50051", *, token: str | None = None,
                 root_certificates: bytes | None = None, private_key: bytes | None = None,
                 certificate_chain: bytes | None = None, timeout: float | None = 60.0,
                 connections: int = 0) -> None:
        """`connections` N: N connections of this client's own to each address, calls taking them in
        turn; a server with `--workers` spreads connections, not calls, over its workers. 0: gRPC's
        default, one connection per address shared by every client in the process with the same
        options."""
        if connections < 0:
            raise ValueError(f"connections must be >= 0, got {connections}")
        target = channel_target(target)
        options = CHANNEL_OPTIONS + ([("grpc.use_local_subchannel_pool", 1)] if connections else [])
        if root_certificates or certificate_chain:
            creds = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            self.channels = [grpc.secure_channel(target, creds, options=options) for _ in range(max(1, connections))]
        else:
            self.channels = [grpc.insecure_channel(target, options=options) for _ in range(max(1, connections))]
        self.channel = self.channels[0]
        self._stubs = itertools.cycle([pb_grpc.TranslatorStub(c) for c in self.channels])
        self.metadata = [("authorization", f"Bearer {token}")] if token else None
        self.timeout = timeout

    def translate(self, texts: list[str], *, model: str = "", timeout: float | None = None,
                  **options) -> list[Translation]:
        """Translate texts (each may hold several sentences) in one call. Options, keyword only:
        beam_size, num_hypotheses, length_penalty, max_output_tokens, min_output_tokens,
        return_attention, max_length_factor, no_repeat_ngram_size, repetition_penalty,
        coverage_penalty, use_shortlist; left out (or 0 for the first five) they take the server's
        defaults."""
        request = self._request(texts, model, options)
        response = self.stub.Translate(request, timeout=timeout or self.timeout, metadata=self.metadata)
        return [_translation(t) for t in response.translations]

    def translate_stream(self, batches: Iterable[list[str]], *, model: str = "",
                         **options) -> Iterator[list[Translation]]:
        """One response per batch, in order, over one stream; options as for `translate`."""
        requests = (self._request(texts, model, options) for texts in batches)
        for response in self.stub.TranslateStream(requests, metadata=self.metadata):
            yield [_translation(t) for t in response.translations]

    def list_models(self) -> list[pb.ModelInfo]:
        return list(self.stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout,
                                         metadata=self.metadata).models)

    @staticmethod
    def _request(texts, model: str, options: dict) -> pb.TranslateRequest:
        known = set(pb.DecodingOptions.DESCRIPTOR.fields_by_name)
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        given = {k: v for k, v in options.items() if v is not None}
        return pb.TranslateRequest(texts=list(texts), model=model, options=pb.DecodingOptions(**given))

    @property
    def stub(self) -> pb_grpc.TranslatorStub:
        """The next connection's stub (the only one, unless `connections` > 1)."""
        return next(self._stubs)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    def __enter__(self) -> "TranslatorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m service.client", description="Translate with a running server.")
    p.add_argument("texts", nargs="*", help="texts to translate (none: read --file or stdin, one per line)")
    p.add_argument("--target", default="localhost:50051",
                   help="server address; several, comma-separated, or dns:///NAME:PORT are balanced "
                        "round_robin with retries (default %(default)s)")
    p.add_argument("--model", default="", help="model name (default: the server's default model)")
    p.add_argument("--beam", type=int, default=0, help="beam size (1 greedy; default: server default)")
    p.add_argument("--n-best", type=int, default=0, help="hypotheses per text")
    p.add_argument("--sentences", action="store_true", help="show each sentence's span and translation")
    p.add_argument("--length-factor", type=float, help="at most FACTOR x source tokens + 10 (0: off)")
    p.add_argument("--no-repeat-ngram", type=int, help="no n-gram of this size twice (0: off)")
    p.add_argument("--repetition-penalty", type=float, help="> 1 discourages repeated tokens")
    p.add_argument("--coverage-penalty", type=float, help="beam search: prefer translations covering every word")
    p.add_argument("--shortlist", action=argparse.BooleanOptionalAction, default=None,
                   help="restrict output to the model's vocabulary shortlist (default: the server's)")
    p.add_argument("--attention", action="store_true", help="print the attention matrix as a terminal heatmap")
    p.add_argument("--plot", metavar="PNG", help="save the attention heatmap of the first text (needs matplotlib)")
    p.add_argument("--file", help="read texts from this file, one per line")
    p.add_argument("--batch", type=int, default=16, help="texts per request when reading a file (default %(default)s)")
    p.add_argument("--token", help="bearer token")
    p.add_argument("--ca", help="CA certificate (PEM) for TLS")
    p.add_argument("--cert", help="client certificate (PEM) for mutual TLS")
    p.add_argument("--key", help="client key (PEM) for mutual TLS")
    p.add_argument("--list-models", action="store_true", help="list the served models and exit")
    args = p.parse_args(argv)
    read = lambda path: open(path, "rb").read() if path else None  # noqa: E731
    client = TranslatorClient(args.target, token=args.token, root_certificates=read(args.ca),
                              certificate_chain=read(args.cert), private_key=read(args.key))
    want_attention = args.attention or bool(args.plot)
    try:
        if args.list_models:
            for m in client.list_models():
                scores = ", ".join(f"{s.decoding} BLEU {s.bleu:.1f}" for s in m.scores)
                print(f"{m.name}{' (default)' if m.is_default else ''}: {m.source_language}->{m.target_language}, "
                      f"quantization {m.quantization}, runs {m.kernels.split(':')[0] or '?'}"
                      f"{', vocabulary shortlist' if m.has_shortlist else ''}{'; ' + scores if scores else ''}")
            return 0
        options = dict(beam_size=args.beam, num_hypotheses=args.n_best, max_length_factor=args.length_factor,
                       no_repeat_ngram_size=args.no_repeat_ngram, repetition_penalty=args.repetition_penalty,
                       coverage_penalty=args.coverage_penalty, use_shortlist=args.shortlist)
        if args.texts:
            results = client.translate(args.texts, model=args.model, return_attention=want_attention, **options)
            _show(results, args)
        else:
            _translate_lines(client, args, options)
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


def _show(results: list[Translation], args) -> None:
    from nmt.heatmap import save_heatmap, text_heatmap

    for i, t in enumerate(results):
        for rank, h in enumerate(t.hypotheses):
            prefix = f"[{rank + 1}] " if len(t.hypotheses) > 1 else ""
            print(f"{prefix}{h.text}\t(score {h.score:.3f})" if len(t.hypotheses) > 1 else h.text)
        if args.sentences:
            text = args.texts[i]
            for n, s in enumerate(t.sentences, 1):
                print(f"  sentence {n} [{s.start}:{s.end}] {text[s.start:s.end]!r} -> {s.best.text!r}")
        # one alignment per sentence: the picture NMT attention visualisations draw
        parts = t.sentences if len(t.sentences) > 1 else [t]
        if args.attention:
            for part in parts:
                if part.hypotheses and part.best.attention is not None:
                    print(text_heatmap(part.best.attention, part.source_tokens, part.best.tokens))
        if args.plot and i == 0:
            for n, part in enumerate(parts, 1):
                if not part.hypotheses or part.best.attention is None:
                    continue
                path = args.plot if len(parts) == 1 else _numbered(args.plot, n)
                save_heatmap(part.best.attention, part.source_tokens, part.best.tokens, path, title=part.best.text)
                print(f"attention heatmap saved to {path}", file=sys.stderr)


def _numbered(path: str, n: int) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem}-{n}.{ext}" if dot else f"{path}-{n}"


def _translate_lines(client: TranslatorClient, args, options: dict) -> None:
    from nmt.progress import progress

    lines = [line.rstrip("\n") for line in (open(args.file, encoding="utf-8") if args.file else sys.stdin)]
    batches = [lines[i:i + args.batch] for i in range(0, len(lines), args.batch)]
    with progress(total=len(lines), unit="line", desc="translating") as bar:
        for results in client.translate_stream(batches, model=args.model, **options):
            for t in results:
                print(t.text)
            bar.update(len(results))


if __name__ == "__main__":
    sys.exit(main())
