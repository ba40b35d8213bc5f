"""The ``llm`` rater backend: DataMan-style ratings from a chat LM (DESIGN §3.6).

Two ways to reach the model, one ``LLMRater``:

* **local** (``model: <dir>``): a transformers causal LM and its tokenizer loaded from a local directory
  (``local_files_only``), the chat template with the generation prompt, left padding, batched greedy
  ``generate`` of at most ``max_new_tokens`` (29) tokens; only the new tokens are decoded.
* **http** (``endpoint: http://host:port/v1``): an OpenAI-compatible server (vLLM, SGLang) asked through
  ``POST {endpoint}/chat/completions`` with ``temperature: 0`` and ``max_tokens: 29``, ``concurrency``
  requests at a time.

Answers, failures and what they become (the rules the tests pin down):

* An answer is 15 lines: the domain letter A..O, then 14 integers 1..5 in prompt order (the 13 criteria, then
  the overall score). Only whitespace around the answer and around each line is tolerated; anything else is
  malformed. The two parts are judged separately (see ``parse_answer``): a good domain line with bad scores
  keeps the domain and nulls every score, good scores under a bad domain line keep the scores and null the
  domain. Nothing is ever guessed or repaired.
* ``quality_score`` is the overall score (the 14th rating) as float32, null when the scores are null. It is
  the rating DataMan selects on; the mean of the criteria stays computable from the criterion columns.
* HTTP failure policy: connection errors, timeouts, 429 and 5xx are retried with exponential backoff
  (``backoff_s * 2**attempt``, at least a numeric ``Retry-After``, at most 60 s); after ``max_retries`` retries
  the batch raises ``winnow.core.errors.RetryableError``: the shard fails and is redone on the next run, and the
  answers already obtained are kept in the resume cache so nothing is asked twice. An outage therefore never
  turns into a shard of silently missing ratings. 401/403/404 (a wrong key, URL or model name: every request
  would fail) raise ``ConfigError`` at once. Any other 4xx (e.g. 400 for a prompt over the context length) is
  specific to one document: its ratings are null, ``requests_failed`` is counted and the batch goes on.
* Resume cache (``rate_cached``): a local JSONL file, one record per answered document,
  ``{"id": <doc id>, "h": <text hash>, "fp": <rater fingerprint>, "answer": <raw answer>}``. Raw answers are
  stored (not parsed ratings), so parsing rules can change without re-asking. A record is reused only when the
  id, the text hash and the fingerprint (model, prompt, decoding and truncation settings) all match; records
  are appended and flushed (and fsynced) every ``batch_size`` answers and when the batch ends or fails. A
  truncated last line left by a killed process is skipped when reading and cut off before appending.

``stats`` counts ``answers`` (parsed into returned tables, cache hits included), ``malformed_answers`` (not
fully well-formed: at least one part null), ``partial_answers`` (the malformed ones that kept one part),
``requests_retried`` (retry attempts), ``requests_failed`` (HTTP requests given up: a non-retryable 4xx or
retries exhausted), ``cache_hits`` and ``truncated_texts``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from loguru import logger
from pydantic import Field, field_validator, model_validator

from winnow.core.device import torch_device
from winnow.core.errors import ConfigError, RetryableError
from winnow.core.section import Section
from winnow.embedding.embed import Embedder
from winnow.embedding.section import EmbedSection
from winnow.scorers.base import CRITERIA, CRITERION_COLUMNS, DOMAINS, QUALITY_SCHEMA, Rater
from winnow.scorers.registry import RATERS

#: the user turn of DESIGN §3.6; ``{text}`` is the (truncated) document
PROMPT_TEMPLATE = (
    "Please score the text on fourteen evaluation criteria and specify its domain:\n"
    "Text: {text}\n"
    "Domain:_\n"
    "[1]Accuracy:_/5\n"
    "[2]Coherence:_/5\n"
    "[3]Language Consistency:_/5\n"
    "[4]Semantic Density:_/5\n"
    "[5]Knowledge Novelty:_/5\n"
    "[6]Topic Focus:_/5\n"
    "[7]Creativity:_/5\n"
    "[8]Professionalism:_/5\n"
    "[9]Style Consistency:_/5\n"
    "[10]Grammatical Diversity:_/5\n"
    "[11]Structural Standardization:_/5\n"
    "[12]Originality:_/5\n"
    "[13]Sensitivity:_/5\n"
    "[14]Overall Score:_/5"
)
_PROMPT_HEAD, _PROMPT_TAIL = PROMPT_TEMPLATE.split("{text}")
SYSTEM_PROMPT = "You are a helpful assistant."

#: ratings in an answer: the 13 criteria, then the overall score
N_RATINGS = len(CRITERIA) + 1
#: the marker between the kept first and last halves of a long text
ELLIPSIS = "..."
#: bump when the meaning of a cached answer changes (prompt, truncation rule); 2: DataMan's text clean-up
CACHE_VERSION = 2
#: cap on one backoff sleep, seconds
MAX_BACKOFF_S = 60.0

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCORE_LINE = re.compile(r"^[1-5]$")


# --------------------------------------------------------------------------------------------------- prompt


def build_prompt(text: str) -> str:
    """The user turn of DESIGN §3.6 for ``text`` (already truncated); braces in ``text`` are kept as they are."""
    return _PROMPT_HEAD + text + _PROMPT_TAIL


def build_messages(text: str) -> list[dict[str, str]]:
    """The chat: the system turn "You are a helpful assistant." and the rating prompt as the user turn."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": build_prompt(text)}]


#: DataMan's clean-up before truncation (its inference script): a quoted ellipsis at the very start of the text
#: ("…", "...." in straight or curly double quotes), and image links with an empty alt text that end a line
_LEADING_QUOTED_ELLIPSIS = re.compile(r'^["\u201c\u201d](?:\u2026+|\.{3,})["\u201c\u201d]')
_BARE_IMAGE_LINK = re.compile(r"!\[\]\(/?[^)]+\)\n")


def dataman_clean(text: str) -> str:
    r"""The text as DataMan's raters saw it: without a leading quoted ellipsis and without ``![](url)`` lines.

    >>> dataman_clean('"..."Chapter 1\n![](/img/a.png)\nText')
    'Chapter 1\nText'
    """
    return _BARE_IMAGE_LINK.sub("", _LEADING_QUOTED_ELLIPSIS.sub("", text))


def truncate_for_prompt(text: str, tokenizer: Any = None, max_tokens: int = 1894, chars_per_token: float = 3.0) -> str:
    """Keep the first and last halves of a long text with "..." between (DESIGN §3.6).

    With a tokenizer: a text of more than ``max_tokens`` tokens (no special tokens) becomes its first
    ``max_tokens // 2`` tokens + "..." + its last ``max_tokens - max_tokens // 2`` tokens. A fast tokenizer cuts
    the original text at the tokens' character offsets (no decode artefacts); a slow one decodes the kept ids.
    A text within the limit is returned unchanged (the same object).

    Without a tokenizer (HTTP backend with no local tokenizer): an approximation by characters, the limit being
    ``max_tokens * chars_per_token`` characters split the same way. 3 characters per token is on the safe side
    for English prose with Qwen-style BPE vocabularies but not for CJK text or code; point ``tokenizer`` at the
    served model's tokenizer for exact budgets.
    """
    if max_tokens < 2:
        raise ValueError("max_tokens must be >= 2")
    head_n = max_tokens // 2
    tail_n = max_tokens - head_n
    if tokenizer is None:
        limit = int(max_tokens * chars_per_token)
        if len(text) <= limit:
            return text
        head_c = limit // 2
        return text[:head_c] + ELLIPSIS + text[len(text) - (limit - head_c) :]
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        if len(offsets) <= max_tokens:
            return text
        return text[: offsets[head_n - 1][1]] + ELLIPSIS + text[offsets[len(offsets) - tail_n][0] :]
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return text
    decode = tokenizer.decode
    return decode(ids[:head_n]) + ELLIPSIS + decode(ids[len(ids) - tail_n :])


# --------------------------------------------------------------------------------------------------- answers


def parse_answer(answer: str | None) -> tuple[str | None, list[int] | None]:
    """Parse a rater answer into ``(domain letter, 14 ratings)``; a part that is not well-formed is None.

    The answer must be exactly 15 lines once whitespace around it is stripped; each line is stripped too (so
    ``\\r\\n`` and stray spaces pass) but an empty line inside counts as a line. The parts are judged
    separately:

    * domain: the first line is exactly one of the letters A..O (upper case). Judged even when the line count
      is wrong (a cut-short answer still names its domain first).
    * ratings: exactly 15 lines and lines 2..15 each exactly one digit 1..5. Any fault (a line too few or too
      many, "0", "6", "4.5", "five", "**4**") nulls all 14 ratings: positions cannot be trusted after one.
    """
    if not isinstance(answer, str):
        return None, None
    lines = [line.strip() for line in answer.strip().split("\n")]
    domain = lines[0] if lines[0] in DOMAINS else None
    scores: list[int] | None = None
    if len(lines) == N_RATINGS + 1 and all(_SCORE_LINE.match(s) for s in lines[1:]):
        scores = [int(s) for s in lines[1:]]
    return domain, scores


def _answers_table(parsed: Sequence[tuple[str | None, list[int] | None]]) -> pa.Table:
    n = len(parsed)
    ratings = np.zeros((n, N_RATINGS), dtype=np.int8)
    has_scores = np.zeros(n, dtype=bool)
    domains: list[str | None] = []
    for i, (letter, scores) in enumerate(parsed):
        domains.append(DOMAINS[letter] if letter is not None else None)
        if scores is not None:
            ratings[i] = scores
            has_scores[i] = True
    null = ~has_scores
    cols = [pa.array(ratings[:, j], type=pa.int8(), mask=null) for j in range(N_RATINGS)]
    cols.append(pa.array(ratings[:, -1].astype(np.float32), type=pa.float32(), mask=null))
    cols.append(pa.array(domains, type=pa.string()))
    names = [*CRITERION_COLUMNS, "quality_overall", "quality_score", "quality_domain"]
    assert names == QUALITY_SCHEMA.names
    return pa.Table.from_arrays(cols, schema=QUALITY_SCHEMA)


# --------------------------------------------------------------------------------------------------- config


class LLMSection(Section):
    """The ``llm`` rater: a chat LM in a local directory or behind an OpenAI-compatible endpoint.

    Args:
        model: a local transformers model directory (weights, tokenizer and chat template). Exactly one of
            ``model`` and ``endpoint``.
        endpoint: the base URL of an OpenAI-compatible server, e.g. ``http://127.0.0.1:8000/v1``.
        model_name: the served model name sent with each request (required with ``endpoint`` only).
        api_key_env: the NAME of the environment variable holding the endpoint's API key (sent as
            ``Authorization: Bearer``); never the key itself. ``null``: no Authorization header.
        tokenizer: a local tokenizer directory used to truncate long texts exactly for the endpoint; ``null``
            truncates by characters (``chars_per_token``). The local backend uses the model's own tokenizer.
        chars_per_token: the character budget per token of that approximation.
        batch_size: local: sequences per ``generate`` call; http: answers per cache flush.
        concurrency: http: requests in flight at once.
        max_new_tokens: tokens generated per answer (15 lines of one token each = 29 for Qwen2 tokenizers).
        max_prompt_tokens: tokens of document text kept (first and last halves) in the prompt.
        clean: ``dataman`` (default): before truncation, remove a leading quoted ellipsis and image links with an
            empty alt text (``![](url)`` ending a line), as DataMan's own inference does; ``none`` keeps the text.
        timeout_s: http: seconds per request (connect and read).
        max_retries: http: retries of a request after a connection error, timeout, 429 or 5xx.
        backoff_s: http: the first retry's delay; doubled at every further retry.
        device: local: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        dtype: local: ``auto`` (bfloat16 on CUDA where supported, else float16; float32 on CPU) or a fixed one.
    """

    model: str | None = None
    endpoint: str | None = None
    model_name: str | None = None
    api_key_env: str | None = None
    tokenizer: str | None = None
    chars_per_token: float = Field(3.0, gt=0, le=64)
    batch_size: int = Field(16, ge=1, le=65_536)
    concurrency: int = Field(8, ge=1, le=1024)
    max_new_tokens: int = Field(29, ge=1, le=4096)
    max_prompt_tokens: int = Field(1894, ge=2, le=1_000_000)
    clean: Literal["dataman", "none"] = "dataman"
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0, le=100)
    backoff_s: float = Field(1.0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None:
            if not re.match(r"^https?://[^/\s]+", v):
                raise ValueError("endpoint must be an http(s) URL such as http://127.0.0.1:8000/v1")
            v = v.rstrip("/")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.match(v):
            raise ValueError("api_key_env is the name of an environment variable (e.g. WINNOW_LLM_KEY), not a key")
        return v

    @model_validator(mode="after")
    def _one_backend(self) -> LLMSection:
        if (self.model is None) == (self.endpoint is None):
            raise ValueError("set exactly one of model (a local model directory) and endpoint (a server URL)")
        if self.endpoint is not None and not self.model_name:
            raise ValueError("model_name (the served model's name) is required with endpoint")
        if self.model is not None and self.model_name is not None:
            raise ValueError("model_name is for endpoint; a local model is named by its directory")
        return self

    @property
    def backend(self) -> Literal["local", "http"]:
        return "local" if self.model is not None else "http"


# --------------------------------------------------------------------------------------------------- rater


class _Aborted(Exception):
    """A request gave up because another request of the same batch failed for good."""


@RATERS.register("llm", order=20, needs_embeddings=False, gpu=True, section="score.llm")
class LLMRater(Rater):
    """Rates documents with a DataMan-style chat LM (see the module docstring for the rules).

    One ``rate``/``rate_cached`` call at a time per instance (the HTTP backend parallelises inside a call).

    Args:
        cfg: an ``LLMSection`` or a mapping validated into one.
    """

    name = "llm"

    def __init__(self, cfg: LLMSection | Mapping[str, Any]):
        self.cfg = cfg if isinstance(cfg, LLMSection) else LLMSection.model_validate(dict(cfg))
        self.stats: dict[str, int] = {}
        self.reset_stats()
        self._init_runtime()

    @classmethod
    def from_config(cls, score: Any, embed: EmbedSection, embedder: Embedder | None = None) -> LLMRater:
        """The rater of ``score.backend: llm``: the ``score.llm`` section (the embed settings are not used)."""
        if score.llm is None:
            raise ConfigError("score.backend=llm needs a score.llm section (model: DIR, or endpoint: URL)")
        return cls(score.llm)

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._ready = False
        self.model: Any = None
        self.tokenizer: Any = None
        self.device: str = "cpu"
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._sessions: list[Any] = []
        self._headers: dict[str, str] = {}
        #: values never to print (the API key), scrubbed from error bodies
        self._secrets: tuple[str, ...] = ()
        self._url = ""
        # the last cache file read or written: (path, fingerprint, size in bytes, records), so that a shard
        # rated in many batches does not re-read its growing cache for each
        self._cache_mem: tuple[str, str, int, dict[str, tuple[str, str]]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "stats": dict(self.stats)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.cfg, self.stats = state["cfg"], state["stats"]
        self._init_runtime()

    def reset_stats(self) -> None:
        self.stats = dict.fromkeys(
            ("answers", "malformed_answers", "partial_answers", "requests_retried", "requests_failed",
             "cache_hits", "truncated_texts"),
            0,
        )  # fmt: skip

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    # ------------------------------------------------------------------------------------- setup/teardown

    def setup(self) -> None:
        if self._ready:
            return
        if self.cfg.backend == "local":
            self._setup_local()
        else:
            self._setup_http()
        self._ready = True

    def teardown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        for s in self._sessions:
            s.close()
        self._init_runtime()

    def _setup_local(self) -> None:
        # heavy, and only the local backend needs them: imported here, not when the config is read
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(self.cfg.model).expanduser()  # type: ignore[arg-type]
        if not path.is_dir():
            raise ConfigError(f"llm.model: {path} is not a local model directory (hub ids are not fetched)")
        device = torch_device(self.cfg.device, "llm.device")
        dtype = self.cfg.dtype
        if dtype == "auto":
            if device == "cuda":
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                dtype = "float32"
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if not getattr(tok, "chat_template", None):
            raise ConfigError(f"llm.model: the tokenizer in {path} has no chat template")
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            if tok.eos_token_id is None:
                raise ConfigError(f"llm.model: the tokenizer in {path} has neither a pad nor an eos token")
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=getattr(torch, dtype))
        model.to(device).eval()
        self.model, self.tokenizer, self.device = model, tok, device

    def _setup_http(self) -> None:
        # only the http backend needs requests (kept off the config's import path); fail here, not in a worker
        import requests  # noqa: F401

        self._url = f"{self.cfg.endpoint}/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if self.cfg.api_key_env is not None:
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                raise ConfigError(f"llm.api_key_env: the environment variable {self.cfg.api_key_env} is not set")
            self._headers["Authorization"] = f"Bearer {key}"
            self._secrets = (key,)
        if self.cfg.tokenizer is not None:
            from transformers import AutoTokenizer  # heavy and optional: only with llm.tokenizer

            path = Path(self.cfg.tokenizer).expanduser()
            if not path.is_dir():
                raise ConfigError(f"llm.tokenizer: {path} is not a local tokenizer directory")
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._executor = ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="winnow-llm")

    # ------------------------------------------------------------------------------------------- rating

    def fingerprint(self) -> str:
        """What a cached answer depends on: the model, the prompt, decoding and truncation settings."""
        c = self.cfg
        if c.backend == "local":
            model = {"dir": str(Path(c.model).expanduser().resolve())}  # type: ignore[arg-type]
            trunc: Any = "model-tokenizer"
        else:
            model = {"served": c.model_name}
            trunc = (
                {"tokenizer": str(Path(c.tokenizer).expanduser().resolve())}
                if c.tokenizer
                else {"chars_per_token": c.chars_per_token}
            )
        blob = {
            "v": CACHE_VERSION,
            "prompt": hashlib.sha256(PROMPT_TEMPLATE.encode()).hexdigest()[:16],
            "system": SYSTEM_PROMPT,
            "model": model,
            "max_new_tokens": c.max_new_tokens,
            "max_prompt_tokens": c.max_prompt_tokens,
            "clean": c.clean,
            "truncation": trunc,
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def rate(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> pa.Table:
        """Rate a batch (``embeddings`` are not used); null where an answer is malformed or failed."""
        answers: list[str | None] = [None] * len(texts)
        for i, answer in self._answers(list(texts)):
            answers[i] = answer
        return self.parse_answers(answers)

    def rate_cached(
        self,
        ids: Sequence[Any],
        texts: Sequence[str],
        cache_path: str | os.PathLike[str],
        embeddings: np.ndarray | None = None,
    ) -> pa.Table:
        """``rate`` with a resume cache: documents answered before (same id, text and fingerprint) are not
        asked again; new answers are appended to ``cache_path`` (a local JSONL file) as they arrive.

        If the batch fails (``RetryableError``), the answers obtained so far are in the cache.
        """
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        keys = [str(i) for i in ids]
        hashes = [_text_hash(t) for t in texts]
        fp = self.fingerprint()
        cached = self._read_cache(cache_path, fp)
        answers: list[str | None] = [None] * len(texts)
        todo: list[int] = []
        for i, (k, h) in enumerate(zip(keys, hashes, strict=True)):
            rec = cached.get(k)
            if rec is not None and rec[0] == h:
                answers[i] = rec[1]
            else:
                todo.append(i)
        self._count("cache_hits", len(texts) - len(todo))
        if todo:
            with _CacheWriter(cache_path, flush_every=self.cfg.batch_size) as writer:
                for j, answer in self._answers([texts[i] for i in todo]):
                    i = todo[j]
                    answers[i] = answer
                    if answer is not None:
                        writer.add({"id": keys[i], "h": hashes[i], "fp": fp, "answer": answer})
                        cached[keys[i]] = (hashes[i], answer)
        path = Path(cache_path)
        if path.exists():
            self._cache_mem = (str(path.resolve()), fp, path.stat().st_size, cached)
        return self.parse_answers(answers)

    def _read_cache(self, cache_path: str | os.PathLike[str], fp: str) -> dict[str, tuple[str, str]]:
        """``read_cache``, or the records in memory when this rater was the file's last writer."""
        mem, path = self._cache_mem, Path(cache_path)
        self._cache_mem = None
        if (
            mem is not None
            and mem[:2] == (str(path.resolve()), fp)
            and path.exists()
            and path.stat().st_size == mem[2]
        ):
            return mem[3]
        return read_cache(path, fp)

    def parse_answers(self, answers: Sequence[str | None]) -> pa.Table:
        """Raw answers (None: no answer, e.g. a failed request) to a ``QUALITY_SCHEMA`` table; counts stats."""
        parsed = []
        for a in answers:
            if a is None:
                parsed.append((None, None))
                continue
            domain, scores = parse_answer(a)
            self._count("answers")
            if domain is None or scores is None:
                self._count("malformed_answers")
                if domain is not None or scores is not None:
                    self._count("partial_answers")
            parsed.append((domain, scores))
        return _answers_table(parsed)

    def _answers(self, texts: list[str]) -> Iterator[tuple[int, str | None]]:
        """``(index, raw answer or None)`` for every text, in completion order."""
        if not texts:
            return
        self.setup()
        if self.cfg.backend == "local":
            yield from self._answers_local(texts)
        else:
            yield from self._answers_http(texts)

    def _truncate(self, text: str) -> str:
        if self.cfg.clean == "dataman":
            text = dataman_clean(text)
        out = truncate_for_prompt(text, self.tokenizer, self.cfg.max_prompt_tokens, self.cfg.chars_per_token)
        if out is not text:
            self._count("truncated_texts")
        return out

    # ---------------------------------------------------------------------------------------------- local

    def _answers_local(self, texts: list[str]) -> Iterator[tuple[int, str | None]]:
        # heavy, local backend only (see _setup_local)
        import torch
        from transformers import GenerationConfig

        tok, model = self.tokenizer, self.model
        ids = [self._chat_ids(self._truncate(t)) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (-len(ids[i]), i))
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        gen = GenerationConfig(
            do_sample=False, max_new_tokens=self.cfg.max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=eos
        )
        bs = self.cfg.batch_size
        for start in range(0, len(order), bs):
            chunk = order[start : start + bs]
            batch = tok.pad({"input_ids": [ids[i] for i in chunk]}, padding=True, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.inference_mode():
                out = model.generate(**batch, generation_config=gen)
            new = out[:, batch["input_ids"].shape[1] :]
            yield from zip(chunk, tok.batch_decode(new, skip_special_tokens=True), strict=True)

    def _chat_ids(self, text: str) -> list[int]:
        """The prompt's token ids. Control tokens inside the document stay text where transformers can do it."""
        enc = self.tokenizer.apply_chat_template(
            build_messages(text), add_generation_prompt=True, tokenize=True, return_dict=True,
            sanitize_control_tokens=True,
        )  # fmt: skip
        return list(enc["input_ids"])

    # ----------------------------------------------------------------------------------------------- http

    def _answers_http(self, texts: list[str]) -> Iterator[tuple[int, str | None]]:
        assert self._executor is not None
        self._abort.clear()
        futures: dict[Future[str | None], int] = {
            self._executor.submit(self._request, self._truncate(t)): i for i, t in enumerate(texts)
        }
        pending = set(futures)
        error: BaseException | None = None
        try:
            for f in as_completed(futures):
                pending.discard(f)
                exc = f.exception()
                if exc is not None:
                    error = exc
                    break
                yield futures[f], f.result()
            if error is not None:
                self._abort.set()
                for f in pending:
                    f.cancel()
                wait(pending)
                for f in pending:  # finished while we stopped: keep them (the caller caches them)
                    if not f.cancelled() and f.exception() is None:
                        yield futures[f], f.result()
                pending.clear()
                raise error
        finally:
            if pending:  # the consumer stopped early
                self._abort.set()
                for f in pending:
                    f.cancel()

    def _session(self) -> Any:
        s = getattr(self._local, "session", None)
        if s is None:
            import requests  # http backend only (see _setup_http)

            s = requests.Session()
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def _request(self, text: str) -> str | None:
        """One chat completion; the answer text, or None for a document-specific failure (non-retryable 4xx)."""
        import requests  # http backend only (see _setup_http)

        c = self.cfg
        body = {
            "model": c.model_name,
            "messages": build_messages(text),
            "temperature": 0,
            "max_tokens": c.max_new_tokens,
        }
        reason = ""
        for attempt in range(c.max_retries + 1):
            if self._abort.is_set():
                raise _Aborted()
            retry_after = 0.0
            try:
                resp = self._session().post(self._url, json=body, headers=self._headers, timeout=c.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as e:
                reason = f"{type(e).__name__}: {e}"
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    return _completion_text(resp)
                if status in (401, 403, 404):
                    self._count("requests_failed")
                    body = _snippet(resp, secrets=self._secrets)
                    raise ConfigError(f"llm endpoint {self._url} answered HTTP {status}: {body}")
                if status != 429 and status < 500:
                    self._count("requests_failed")
                    body = _snippet(resp, secrets=self._secrets)
                    logger.warning(f"llm: HTTP {status} from {self._url}, rating left null: {body}")
                    return None
                reason = f"HTTP {status}: {_snippet(resp, secrets=self._secrets)}"
                retry_after = _retry_after(resp)
            if attempt == c.max_retries:
                break
            self._count("requests_retried")
            delay = min(max(c.backoff_s * 2**attempt, retry_after), MAX_BACKOFF_S)
            if self._abort.wait(delay):
                raise _Aborted()
        self._count("requests_failed")
        raise RetryableError(f"llm endpoint {self._url}: {reason} (gave up after {c.max_retries} retries)")


def _completion_text(resp: Any) -> str:
    """The answer of an OpenAI chat completion; "" (a malformed answer) when the body is not one."""
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def _retry_after(resp: Any) -> float:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", 0)))
    except (TypeError, ValueError):
        return 0.0


def _snippet(resp: Any, n: int = 200, secrets: Sequence[str] = ()) -> str:
    """The start of an error body for a message, with every secret (the API key) replaced: a server that echoes
    the request's headers must not put the key into logs or ``failures/``."""
    try:
        text = resp.text
    except Exception:  # noqa: BLE001 - best-effort message
        return ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text[:n].replace("\n", " ")


# --------------------------------------------------------------------------------------------------- cache


def _text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def read_cache(path: str | os.PathLike[str], fingerprint: str | None = None) -> dict[str, tuple[str, str]]:
    """The resume cache as ``{id: (text hash, raw answer)}``; the last record of an id wins.

    Records of another fingerprint (when given) and unreadable lines (a line cut short by a kill) are skipped.
    """
    out: dict[str, tuple[str, str]] = {}
    p = Path(path)
    if not p.exists():
        return out
    with p.open("rb") as f:
        for line in f:
            try:
                rec = json.loads(line)
                key, h, answer = rec["id"], rec["h"], rec["answer"]
            except (ValueError, KeyError, TypeError):
                continue
            if not (isinstance(key, str) and isinstance(h, str) and isinstance(answer, str)):
                continue
            if fingerprint is not None and rec.get("fp") != fingerprint:
                continue
            out[key] = (h, answer)
    return out


class _CacheWriter:
    """Appends JSON lines to the resume cache, a flush (and fsync) every ``flush_every`` records and on exit."""

    def __init__(self, path: str | os.PathLike[str], flush_every: int):
        self.path = Path(path)
        self.flush_every = flush_every
        self._buf: list[bytes] = []
        self._f: Any = None

    def __enter__(self) -> _CacheWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_partial_line(self.path)
        self._f = self.path.open("ab")
        return self

    def add(self, rec: dict[str, Any]) -> None:
        self._buf.append(json.dumps(rec).encode("ascii") + b"\n")
        if len(self._buf) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._f.write(b"".join(self._buf))
            self._buf.clear()
            self._f.flush()
            os.fsync(self._f.fileno())

    def __exit__(self, *exc: Any) -> None:
        try:
            self.flush()
        finally:
            self._f.close()


def _cut_partial_line(path: Path) -> None:
    """Cut a last line with no newline (a write cut short) so appended records start on a line of their own."""
    if not path.exists():
        return
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        pos = size
        block = 65_536
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                f.truncate(start + nl + 1)
                return
            pos = start
        f.truncate(0)
