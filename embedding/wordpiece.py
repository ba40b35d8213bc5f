"""BERT WordPiece tokenisation in torch, on the embedding device (issue 9's moonshot: tokenisation off the CPU).

On a GPU the HF fast tokenizer, not the model, is the wall: one H100 runs MiniLM's forward at about 40k docs/s
while 16 cores tokenise about 10k docs/s. ``TorchWordPiece`` moves the whole tokenizer onto the device and gives
the same token ids as the HF tokenizer it was built from. The CPU only slices texts and encodes them as UTF-32.

How it stays exact. Every per-character decision is read off the HF tokenizer itself when the tables are built,
so no Unicode rule is re-implemented here:

1. *Normalisation* (``BertNormalizer``: clean text, pad CJK, strip accents, lowercase) acts on each character
   alone. A table maps every code point to its normalised form of 0 to 3 code points (``normalize_str`` of that
   character). Only NFD's reordering of combining marks could couple neighbours, and the marks that it moves are
   the ones accent stripping removes.
2. *Pre-tokenisation* (``BertPreTokenizer``) splits at whitespace and isolates punctuation. A table gives each
   code point's class, found by pre-tokenising ``"a" + c + "a"``.
3. *WordPiece*, greedy longest-match-first with ``##`` continuations: for every position and every length up to
   the longest vocabulary piece (18 characters for MiniLM), a hash of the substring is looked up among the hashes
   of the vocabulary (sorted; ``searchsorted``). The hashes are two polynomial hashes modulo primes below 2^31,
   packed into one int64, so no arithmetic overflows. Collisions are checked when the tables are built: no two
   pieces share a key. A collision with a substring that is not in the vocabulary is possible in principle
   (about 1 in 4·10^18 per lookup) and is what the id-equality tests on real text would catch. Then each word
   walks its greedy pieces, all words at once. A word longer than ``max_input_chars_per_word``, or one that
   cannot be covered, becomes ``[UNK]``.
4. ``[CLS] ... [SEP]`` and truncation at ``max_length`` as the template post-processor does.

Texts that could meet the tokenizer's added tokens (``[CLS]``, ``[SEP]``, ... written in the text, which HF
matches before normalising) are handed to the HF tokenizer instead, and so are batches that cannot be encoded
as UTF-32 (lone surrogates). ``fallbacks`` counts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: character classes of the pre-tokenizer
WORD, SPACE, PUNCT = 0, 1, 2
_P1, _P2 = 2_147_483_629, 2_147_483_587  # primes below 2^31
_B1, _B2 = 1_000_003, 998_244_353
_MAX_CP = 0x110000


class UnsupportedTokenizer(ValueError):
    """The tokenizer is not a BERT WordPiece tokenizer that TorchWordPiece can reproduce."""


def _key(h1: Any, h2: Any) -> Any:
    return h1 * _P2 + h2  # < 2^62: fits int64, unique for h1 < P1, h2 < P2


def _hash_str(piece: str) -> int:
    h1 = h2 = 0
    for ch in piece:
        h1 = (h1 * _B1 + ord(ch) + 1) % _P1
        h2 = (h2 * _B2 + ord(ch) + 1) % _P2
    return _key(h1, h2)


def build_tables(tokenizer: Any) -> dict[str, Any]:
    """The character tables and vocabulary hashes of a HF fast BERT tokenizer (about 3 s; cache the result)."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UnsupportedTokenizer("not a fast tokenizer")
    spec = json.loads(backend.to_str())
    norm, pre, model = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec.get("model") or {}
    if (
        norm.get("type") != "BertNormalizer"
        or pre.get("type") != "BertPreTokenizer"
        or model.get("type") != "WordPiece"
    ):
        raise UnsupportedTokenizer(
            f"needs BertNormalizer + BertPreTokenizer + WordPiece, got {norm.get('type')} + {pre.get('type')} + "
            f"{model.get('type')}"
        )
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    # 1. normalisation of each code point: up to 3 code points out, -1 = none
    norm_len = np.ones(_MAX_CP, dtype=np.int8)
    norm_out = np.full((_MAX_CP, 3), -1, dtype=np.int32)
    norm_out[:, 0] = np.arange(_MAX_CP)
    cls = np.zeros(_MAX_CP, dtype=np.int8)
    for cp in range(_MAX_CP):
        if 0xD800 <= cp < 0xE000:  # surrogates never reach here (UTF-32 encoding refuses them)
            continue
        ch = chr(cp)
        out = normalizer.normalize_str(ch)
        if out != ch:
            if len(out) > 3:
                raise UnsupportedTokenizer(f"U+{cp:04X} normalises to {len(out)} characters")
            norm_len[cp] = len(out)
            norm_out[cp] = -1
            norm_out[cp, : len(out)] = [ord(c) for c in out]
        # 2. the pre-tokenizer's class of the character (as it appears after normalisation)
        parts = [p for p, _ in pre_tokenizer.pre_tokenize_str(f"a{ch}a")]
        if parts == ["a", "a"]:
            cls[cp] = SPACE
        elif parts == ["a", ch, "a"]:
            cls[cp] = PUNCT
        elif parts != [f"a{ch}a"]:
            raise UnsupportedTokenizer(f"pre-tokenizer splits U+{cp:04X} as {parts}")
    # 3. vocabulary hashes: word-initial pieces and ## continuations
    prefix = model.get("continuing_subword_prefix", "##")
    vocab: dict[str, int] = model["vocab"]
    keys = {True: {}, False: {}}  # continuation? -> key -> id
    for piece, idx in vocab.items():
        cont = piece.startswith(prefix) and len(piece) > len(prefix)
        body = piece[len(prefix) :] if cont else piece
        k = _hash_str(body)
        if k in keys[cont] and keys[cont][k] != idx:
            raise UnsupportedTokenizer(f"hash collision between vocabulary pieces ({piece!r})")
        keys[cont][k] = idx
    tables: dict[str, Any] = {
        "norm_len": norm_len,
        "norm_out": norm_out,
        "cls": cls,
        "max_piece": max(len(p[len(prefix) :]) if p.startswith(prefix) else len(p) for p in vocab),
        "max_word": int(model.get("max_input_chars_per_word", 100)),
        "unk": vocab[model.get("unk_token", "[UNK]")],
        "cls_id": tokenizer.cls_token_id,
        "sep_id": tokenizer.sep_token_id,
        "pad_id": tokenizer.pad_token_id,
        # added tokens are matched in the raw text before normalising: texts holding one (any case) go to HF
        "added": sorted({t.content.lower() for t in tokenizer.added_tokens_decoder.values() if t.content}),
    }
    for cont, name in ((False, "init"), (True, "cont")):
        k = np.array(sorted(keys[cont]), dtype=np.int64)
        tables[f"{name}_keys"] = k
        tables[f"{name}_ids"] = np.array([keys[cont][int(x)] for x in k], dtype=np.int64)
    return tables


class TorchWordPiece:
    """Token ids of a BERT WordPiece tokenizer, computed with torch on ``device``; identical to the HF tokenizer.

    Args:
        tokenizer: the HF fast tokenizer to reproduce (its tables are built once, ~3 s).
        device: where the work runs (``cuda`` for speed; ``cpu`` works and is what CI tests).
        tables: tables from ``build_tables`` (to share them between instances).
    """

    def __init__(self, tokenizer: Any, device: str = "cpu", tables: dict[str, Any] | None = None):
        import torch

        self.tokenizer = tokenizer
        self.device = torch.device(device)
        t = tables if tables is not None else build_tables(tokenizer)
        dev = self.device
        self.norm_len = torch.as_tensor(t["norm_len"], device=dev).long()
        self.norm_out = torch.as_tensor(t["norm_out"], device=dev).long()
        self.cls = torch.as_tensor(t["cls"], device=dev)
        self.keys = {n: torch.as_tensor(t[f"{n}_keys"], device=dev) for n in ("init", "cont")}
        self.ids = {n: torch.as_tensor(t[f"{n}_ids"], device=dev) for n in ("init", "cont")}
        self.max_piece, self.max_word, self.unk = t["max_piece"], t["max_word"], t["unk"]
        self.cls_id, self.sep_id, self.pad_id = t["cls_id"], t["sep_id"], t["pad_id"]
        self.added = t["added"]
        self._first_chars = {c for a in self.added for c in (a[0], a[0].upper())}
        self.fallbacks = 0

    # ----------------------------------------------------------------------------------------------------------

    def __call__(self, texts: Sequence[str], max_length: int, pad_to_multiple_of: int | None = None) -> dict[str, Any]:
        """``input_ids``, ``attention_mask`` and ``token_type_ids`` (torch, on the device), padded to the longest
        (rounded up to a multiple of ``pad_to_multiple_of``, as HF's argument of that name does)."""
        import torch

        texts = list(texts)
        special = [i for i, t in enumerate(texts) if self._may_hold_added(t)]
        try:
            cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        except UnicodeEncodeError:  # a lone surrogate: the HF tokenizer decides what happens
            special = list(range(len(texts)))
            cps = np.zeros(0, dtype=np.uint32)
        if len(special) == len(texts):
            return self._hf(texts, max_length, pad_to_multiple_of)
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        ids, n_tok = self._encode(cps, lengths, max_length)
        if special:
            self.fallbacks += len(special)
            hf = self.tokenizer([texts[i] for i in special], truncation=True, max_length=max_length)["input_ids"]
            width = max(ids.shape[1], max(len(x) for x in hf))
            if width > ids.shape[1]:
                ids = torch.nn.functional.pad(ids, (0, width - ids.shape[1]), value=self.pad_id)
            for row, x in zip(special, hf, strict=True):
                ids[row] = self.pad_id
                ids[row, : len(x)] = torch.as_tensor(x, device=self.device)
                n_tok[row] = len(x)
            ids = ids[:, : int(n_tok.max())]
        if pad_to_multiple_of and ids.shape[1] % pad_to_multiple_of:
            extra = pad_to_multiple_of - ids.shape[1] % pad_to_multiple_of
            ids = torch.nn.functional.pad(ids, (0, extra), value=self.pad_id)
        mask = (torch.arange(ids.shape[1], device=self.device)[None, :] < n_tok[:, None]).long()
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}

    def _may_hold_added(self, text: str) -> bool:
        if not any(c in text for c in self._first_chars):  # the common case: one scan per distinct first char
            return False
        low = text.lower()
        return any(a in low for a in self.added)

    def _hf(self, texts: list[str], max_length: int, pad_to_multiple_of: int | None) -> dict[str, Any]:
        self.fallbacks += len(texts)
        feats = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, pad_to_multiple_of=pad_to_multiple_of,
            return_tensors="pt",
        )  # fmt: skip
        return {k: v.to(self.device) for k, v in feats.items()}

    def _encode(self, cps: np.ndarray, lengths: np.ndarray, max_length: int) -> tuple[Any, Any]:
        import torch

        dev = self.device
        n_docs = len(lengths)
        cp = torch.from_numpy(cps.astype(np.int64))
        cp = cp.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else cp
        doc = torch.repeat_interleave(torch.arange(n_docs, device=dev), torch.as_tensor(lengths, device=dev))
        # 1. normalise: each code point becomes 0..3 code points
        reps = self.norm_len[cp]
        out = self.norm_out[cp]  # [n, 3]
        keep = torch.arange(3, device=dev)[None, :] < reps[:, None]
        chars = out[keep]
        cdoc = doc[:, None].expand(-1, 3)[keep]
        # 2. words: maximal runs of WORD characters; each PUNCT character is a word of its own
        kind = self.cls[chars].long()
        n = chars.numel()
        prev_kind = torch.cat([torch.full((1,), SPACE, device=dev, dtype=torch.long), kind[:-1]])
        prev_doc = torch.cat([torch.full((1,), -1, device=dev, dtype=torch.long), cdoc[:-1]])
        starts = (kind != SPACE) & ((prev_kind != WORD) | (kind == PUNCT) | (prev_doc != cdoc))
        in_word = kind != SPACE
        word_of = torch.cumsum(starts.long(), 0) - 1  # word index of each character (valid where in_word)
        n_words = int(starts.sum())
        if n_words == 0:
            empty = torch.zeros(0, dtype=torch.long, device=dev)
            return self._assemble(empty, empty, n_docs, max_length)
        w_start = torch.nonzero(starts).squeeze(1)
        w_len = torch.zeros(n_words, dtype=torch.long, device=dev).index_add_(
            0, word_of[in_word], torch.ones(int(in_word.sum()), dtype=torch.long, device=dev)
        )
        w_doc = cdoc[w_start]
        # characters left in the word from each position (0 outside words)
        pos = torch.arange(n, device=dev)
        left = torch.where(in_word, w_start[word_of.clamp(min=0)] + w_len[word_of.clamp(min=0)] - pos, 0)
        # 3. longest vocabulary piece starting at each position, as a word start and as a ## continuation
        c1 = chars + 1
        h1 = torch.zeros(n, dtype=torch.long, device=dev)
        h2 = torch.zeros(n, dtype=torch.long, device=dev)
        best = {k: (torch.zeros(n, dtype=torch.long, device=dev), torch.zeros(n, dtype=torch.long, device=dev))
                for k in ("init", "cont")}  # fmt: skip
        live = torch.nonzero(in_word).squeeze(1)
        for length in range(1, self.max_piece + 1):
            live = live[left[live] >= length]
            if live.numel() == 0:
                break
            nxt = c1[live + length - 1]
            h1[live] = (h1[live] * _B1 + nxt) % _P1
            h2[live] = (h2[live] * _B2 + nxt) % _P2
            key = _key(h1[live], h2[live])
            for name, (blen, bid) in best.items():
                keys = self.keys[name]
                at = torch.searchsorted(keys, key).clamp(max=keys.numel() - 1)
                hit = keys[at] == key
                blen[live[hit]] = length
                bid[live[hit]] = self.ids[name][at[hit]]
        # 4. greedy walk, all words at once; pieces are collected sparsely as (word, id), step after step
        failed = w_len > self.max_word
        at = w_start.clone()
        end = w_start + w_len
        active = torch.nonzero(~failed).squeeze(1)
        blen, bid = best["init"]
        words, found = [], []
        while active.numel():
            p = at[active]
            step = blen[p]
            bad = step == 0
            failed[active[bad]] = True
            ok = active[~bad]
            words.append(ok)
            found.append(bid[p[~bad]])
            at[ok] += step[~bad]
            active = ok[at[ok] < end[ok]]
            blen, bid = best["cont"]
        word = torch.cat(words) if words else torch.zeros(0, dtype=torch.long, device=dev)
        tok = torch.cat(found) if found else torch.zeros(0, dtype=torch.long, device=dev)
        good = ~failed[word]
        unk_words = torch.nonzero(failed).squeeze(1)
        word = torch.cat([word[good], unk_words])
        tok = torch.cat([tok[good], torch.full_like(unk_words, self.unk)])
        word, order = torch.sort(word, stable=True)  # steps were appended in order: (word, step) order
        return self._assemble(tok[order], w_doc[word], n_docs, max_length)

    def _assemble(self, tok: Any, tdoc: Any, n_docs: int, max_length: int) -> tuple[Any, Any]:
        """``[CLS] tokens [SEP]`` per document (``tok`` in order, ``tdoc`` their documents), truncated to
        ``max_length`` and padded to the longest."""
        import torch

        dev = self.device
        room = max_length - 2
        counts = torch.bincount(tdoc, minlength=n_docs)
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(tok.numel(), device=dev) - first[tdoc]
        fits = rank < room
        n_body = counts.clamp(max=room)
        width = int(n_body.max()) + 2 if n_docs else 2
        ids = torch.full((n_docs, width), self.pad_id, dtype=torch.long, device=dev)
        ids[tdoc[fits], rank[fits] + 1] = tok[fits]
        ids[:, 0] = self.cls_id
        ids[torch.arange(n_docs, device=dev), n_body + 1] = self.sep_id
        return ids, n_body + 2
