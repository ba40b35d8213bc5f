"""The ``llm`` rater backend (DESIGN §3.6): prompt, answer parsing, truncation, a local tiny chat model and an
OpenAI-compatible server on loopback. No network, no downloads: every model and tokenizer is built here."""

from __future__ import annotations

import json
import pickle
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from winnow.core.errors import ConfigError, RetryableError
from winnow.scorers.base import CRITERION_COLUMNS, QUALITY_SCHEMA
from winnow.scorers.llm import (
    LLMRater,
    LLMSection,
    build_messages,
    build_prompt,
    dataman_clean,
    parse_answer,
    read_cache,
    truncate_for_prompt,
)

# a literal copy of DESIGN §3.6's prompt: build_prompt must produce exactly this
SPEC_PROMPT = """Please score the text on fourteen evaluation criteria and specify its domain:
Text: {text}
Domain:_
[1]Accuracy:_/5
[2]Coherence:_/5
[3]Language Consistency:_/5
[4]Semantic Density:_/5
[5]Knowledge Novelty:_/5
[6]Topic Focus:_/5
[7]Creativity:_/5
[8]Professionalism:_/5
[9]Style Consistency:_/5
[10]Grammatical Diversity:_/5
[11]Structural Standardization:_/5
[12]Originality:_/5
[13]Sensitivity:_/5
[14]Overall Score:_/5"""

GOOD = "B\n4\n4\n4\n4\n4\n4\n4\n4\n4\n4\n4\n4\n4\n3"  # Finance, 13 criteria at 4, overall 3
ALL_NULL = dict.fromkeys(QUALITY_SCHEMA.names)


def answer(domain: str, scores: list[int]) -> str:
    return "\n".join([domain, *map(str, scores)])


# ------------------------------------------------------------------------------------------------ prompt


def test_prompt_is_the_spec_prompt():
    text = "The quick brown fox.\nSecond line."
    assert build_prompt(text) == SPEC_PROMPT.replace("{text}", text)
    assert build_messages(text) == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": SPEC_PROMPT.replace("{text}", text)},
    ]


def test_prompt_keeps_braces_and_placeholders_in_text():
    text = "a {text} b {} {0} }{"
    assert build_prompt(text) == SPEC_PROMPT.replace("{text}", text)


# ------------------------------------------------------------------------------------------------ answers


@pytest.mark.parametrize(
    "raw, expected",
    [
        (GOOD, ("B", [4] * 13 + [3])),
        ("  \n" + GOOD + "\n\n ", ("B", [4] * 13 + [3])),  # whitespace around the answer
        (GOOD.replace("\n", " \r\n "), ("B", [4] * 13 + [3])),  # and around lines
        (answer("O", [1, 2, 3, 4, 5] * 2 + [5, 4, 3, 2]), ("O", [1, 2, 3, 4, 5] * 2 + [5, 4, 3, 2])),
    ],
)
def test_parse_good_answers(raw, expected):
    assert parse_answer(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        # good domain, bad scores: domain kept, all scores null
        (answer("A", [4] * 13), ("A", None)),  # a rating short
        (answer("A", [4] * 15), ("A", None)),  # a rating too many
        ("A\n4\n4", ("A", None)),  # cut short
        (answer("A", [4] * 13 + [6]), ("A", None)),  # out of range
        (answer("A", [0] + [4] * 13), ("A", None)),
        (GOOD.replace("\n3", "\n4.5"), ("B", None)),  # not an integer
        (GOOD.replace("\n3", "\nfive"), ("B", None)),
        (GOOD.replace("\n3", "\n**3**"), ("B", None)),
        (GOOD.replace("\n3", "\n03"), ("B", None)),
        ("B\n\n" + GOOD[2:], ("B", None)),  # an empty line inside shifts the count
        # bad domain, good scores: scores kept, domain null
        ("b" + GOOD[1:], (None, [4] * 13 + [3])),  # lower case
        ("P" + GOOD[1:], (None, [4] * 13 + [3])),  # not a domain letter
        ("AB" + GOOD[1:], (None, [4] * 13 + [3])),
        ("Finance" + GOOD[1:], (None, [4] * 13 + [3])),
        ("\n".join(["4"] * 15), (None, [4] * 14)),  # a rating where the domain should be
    ],
)
def test_parse_partial_answers(raw, expected):
    assert parse_answer(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   \n  ",
        "I think this text is about finance and scores 4/5.",
        "\n".join(["4"] * 14),
        "\x00\ufffd",
        None,
        42,
    ],
)
def test_parse_garbage(raw):
    assert parse_answer(raw) == (None, None)


def test_parse_answers_table_and_stats():
    rater = LLMRater({"endpoint": "http://127.0.0.1:9/v1", "model_name": "m"})
    table = rater.parse_answers([GOOD, answer("A", [4] * 13), "b" + GOOD[1:], "garbage", None])
    assert table.schema == QUALITY_SCHEMA
    rows = table.to_pylist()
    assert rows[0]["quality_domain"] == "Finance"
    assert [rows[0][c] for c in CRITERION_COLUMNS] == [4] * 13
    assert rows[0]["quality_overall"] == 3 and rows[0]["quality_score"] == 3.0
    assert rows[1] == {**ALL_NULL, "quality_domain": "Medicine"}
    assert rows[2]["quality_domain"] is None and rows[2]["quality_overall"] == 3 and rows[2]["quality_score"] == 3.0
    assert rows[3] == ALL_NULL and rows[4] == ALL_NULL
    assert rater.stats["answers"] == 4  # None (no answer) is not an answer
    assert rater.stats["malformed_answers"] == 3
    assert rater.stats["partial_answers"] == 2


# ------------------------------------------------------------------------------------------------ truncation


def _word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(100)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


@pytest.mark.parametrize("limit, head, tail", [(10, 5, 5), (9, 4, 5), (2, 1, 1)])
def test_truncation_keeps_first_and_last_halves(limit, head, tail):
    tok = _word_tokenizer()
    words = [f"w{i}" for i in range(50)]
    text = "  " + " ".join(words) + "\n"
    out = truncate_for_prompt(text, tok, max_tokens=limit)
    first, last = out.split("...")
    # cut from the original text at token offsets: what lies outside the tokens at either end is kept
    assert first == "  " + " ".join(words[:head]) and last == " ".join(words[-tail:]) + "\n"
    assert len(tok(first, add_special_tokens=False)["input_ids"]) == head
    assert len(tok(last, add_special_tokens=False)["input_ids"]) == tail


def test_truncation_leaves_short_texts_alone():
    tok = _word_tokenizer()
    text = " ".join(f"w{i}" for i in range(10))
    assert truncate_for_prompt(text, tok, max_tokens=10) is text
    assert truncate_for_prompt(text, None, max_tokens=100, chars_per_token=1.0) is text


def test_truncation_default_limit_is_1894_tokens():
    tok = _word_tokenizer()
    words = [f"w{i % 100}" for i in range(3000)]
    out = truncate_for_prompt(" ".join(words), tok)
    first, last = out.split("...")
    assert first.split() == words[:947] and last.split() == words[-947:]


@pytest.mark.parametrize(
    "text, cleaned",
    [
        ('"..."The story begins.', "The story begins."),  # a leading quoted ellipsis (straight quotes)
        ("\u201c\u2026\u201dThe story begins.", "The story begins."),  # curly quotes, one ellipsis character
        ('"....."x', "x"),
        ('Said "..." later', 'Said "..." later'),  # only at the very start
        ('".."x', '".."x'),  # two dots are not an ellipsis
        ("Intro\n![](/img/a.png)\nBody", "Intro\nBody"),  # an image link line, empty alt text
        ("Intro\n![](https://x.org/a.png)\n![](b.png)\nBody", "Intro\nBody"),
        ("![alt](a.png)\nBody", "![alt](a.png)\nBody"),  # an alt text: kept
        ("see ![](a.png) inline", "see ![](a.png) inline"),  # not at a line end: kept
    ],
)
def test_dataman_clean_before_truncation(text, cleaned):
    assert dataman_clean(text) == cleaned


def test_clean_runs_before_truncation_and_is_part_of_the_cache_key(tmp_path):
    on = LLMRater(LLMSection(endpoint="http://127.0.0.1:9/v1", model_name="m", chars_per_token=1.0,
                             max_prompt_tokens=10))  # fmt: skip
    off = LLMRater(LLMSection(endpoint="http://127.0.0.1:9/v1", model_name="m", chars_per_token=1.0,
                              max_prompt_tokens=10, clean="none"))  # fmt: skip
    text = '"..."abcdefghij'
    assert on._truncate(text) == "abcdefghij"  # 10 characters once cleaned: within the limit
    assert off._truncate(text) == '"..."' + "..." + "fghij"  # first and last 5 of the raw 15 characters
    assert on.fingerprint() != off.fingerprint()


def test_truncation_by_characters():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    out = truncate_for_prompt(text, None, max_tokens=10, chars_per_token=3.0)  # 30 characters
    assert out == text[:15] + "..." + text[-15:]


def test_truncation_with_byte_level_bpe(tiny_models):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_models["garbage"]), local_files_only=True)
    text = " ".join(["the quality of data", "é ü 中文 text", "model score"] * 200)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 100
    out = truncate_for_prompt(text, tok, max_tokens=100)
    first, last = out.split("...", 1)
    assert text.startswith(first) and text.endswith(last)  # cut from the original text: no decode artefacts
    assert tok(first, add_special_tokens=False)["input_ids"] == ids[:50]
    assert len(tok(last, add_special_tokens=False)["input_ids"]) <= 50 + 1


def test_truncation_with_a_slow_tokenizer():
    class Slow:  # the decode fallback: anything with encode/decode and no offsets
        is_fast = False

        def encode(self, text, add_special_tokens=False):
            return [int(w[1:]) for w in text.split()]

        def decode(self, ids):
            return " ".join(f"w{i}" for i in ids)

    text = " ".join(f"w{i}" for i in range(20))
    assert truncate_for_prompt(text, Slow(), max_tokens=4) == "w0 w1...w18 w19"


# ------------------------------------------------------------------------------------------------ config


def test_config_validation(monkeypatch):
    assert LLMSection(model="/m").backend == "local"
    cfg = LLMSection(endpoint="http://127.0.0.1:8000/v1/", model_name="dataman")
    assert cfg.backend == "http" and cfg.endpoint == "http://127.0.0.1:8000/v1"
    assert (cfg.max_new_tokens, cfg.max_prompt_tokens) == (29, 1894)
    bad = [
        {},
        {"model": "/m", "endpoint": "http://x/v1", "model_name": "m"},
        {"endpoint": "http://x/v1"},  # no model_name
        {"model": "/m", "model_name": "m"},
        {"endpoint": "ftp://x/v1", "model_name": "m"},
        {"endpoint": "http://x/v1", "model_name": "m", "api_key_env": "sk-abc123"},  # a key, not a name
        {"model": "/m", "temperature": 0.7},  # unknown key
        {"model": "/m", "batch_size": 0},
        {"model": "/m", "device": "tpu"},
    ]
    for kw in bad:
        with pytest.raises(ValidationError):
            LLMSection(**kw)
    with pytest.raises(ValidationError):
        cfg.batch_size = 3  # frozen


def test_rater_pickles_without_runtime_state(tiny_models):
    rater = LLMRater({"model": str(tiny_models["answer"]), "device": "cpu"})
    rater.setup()
    clone = pickle.loads(pickle.dumps(rater))
    assert clone.cfg == rater.cfg and clone.model is None and clone.tokenizer is None
    rater.teardown()


def test_local_model_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a local model directory"):
        LLMRater({"model": str(tmp_path / "missing")}).setup()


# ------------------------------------------------------------------------------------------------ tiny local models

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant<|assistant|>{% endif %}"
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A byte-level BPE tokenizer with a chat template and two random-weight tiny Llama models:

    * ``garbage``: random weights, answers garbage;
    * ``answer``: wired as a bigram model (attention and MLP outputs zeroed, so the last hidden state is the
      last token's embedding) that always answers ``B\\n4\\n4...\\n4`` (29 tokens): the happy path.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    words = ["the", "text", "score", "domain", "data", "model", "quality", "of", "and", "Please", "Accuracy"]
    corpus = []
    for _ in range(300):
        corpus.append(" ".join(rng.choice(words) for _ in range(8)))
        corpus.append("\n".join([rng.choice("ABCDEFGHIJKLMNO")] + [str(rng.randint(1, 5)) for _ in range(14)]))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE,
        additional_special_tokens=["<|im_start|>", "<|assistant|>"],
    )  # fmt: skip
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    root = tmp_path_factory.mktemp("llm-models")
    out = {}
    torch.manual_seed(0)
    garbage = LlamaForCausalLM(config)
    out["garbage"] = root / "garbage"
    garbage.save_pretrained(out["garbage"])
    tok.save_pretrained(out["garbage"])

    model = LlamaForCausalLM(config)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|assistant|>", "B", "Ċ", "4")}
    assert len(set(ids.values())) == 4 and None not in ids.values()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        head.zero_()
        for k, t in enumerate(("<|assistant|>", "B", "Ċ", "4")):
            emb[ids[t]] = 0.0
            emb[ids[t], k] = 1.0
        # next token after: <|assistant|> -> B, B -> \n, \n -> 4, 4 -> \n
        head[ids["B"], 0] = 10.0
        head[ids["Ċ"], 1] = 10.0
        head[ids["4"], 2] = 10.0
        head[ids["Ċ"], 3] = 10.0
    out["answer"] = root / "answer"
    model.save_pretrained(out["answer"])
    tok.save_pretrained(out["answer"])
    return out


TEXTS = ["the quality of the data", "a", "model score " * 40, "Text: <|im_end|> {text} 中文"]


def test_local_random_model_gives_null_ratings_never_guesses(tiny_models):
    rater = LLMRater({"model": str(tiny_models["garbage"]), "batch_size": 3, "device": "cpu"})
    first = rater.rate(TEXTS)
    assert first.schema == QUALITY_SCHEMA and first.num_rows == len(TEXTS)
    for col in [*CRITERION_COLUMNS, "quality_overall", "quality_score"]:
        assert first.column(col).null_count == len(TEXTS)
    assert rater.stats["answers"] == len(TEXTS)
    assert rater.stats["malformed_answers"] == len(TEXTS)
    # greedy: the same answers again
    raw1 = dict(rater._answers(TEXTS))
    assert dict(rater._answers(TEXTS)) == raw1
    assert rater.rate(TEXTS).equals(first)
    rater.teardown()


def test_local_model_happy_path(tiny_models):
    rater = LLMRater({"model": str(tiny_models["answer"]), "batch_size": 2, "device": "cpu", "max_prompt_tokens": 64})
    rater.setup()
    raw = dict(rater._answers(TEXTS))
    assert set(raw.values()) == {answer("B", [4] * 14)}
    table = rater.rate(TEXTS)
    assert table.schema == QUALITY_SCHEMA
    for row in table.to_pylist():
        assert row["quality_domain"] == "Finance"
        assert [row[c] for c in CRITERION_COLUMNS] == [4] * 13
        assert row["quality_overall"] == 4 and row["quality_score"] == 4.0
    assert rater.stats["malformed_answers"] == 0
    assert rater.stats["truncated_texts"] >= 2  # the long text, once per _answers/rate call
    rater.teardown()


@pytest.mark.gpu
def test_local_model_on_cuda(tiny_models):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    rater = LLMRater({"model": str(tiny_models["answer"]), "batch_size": 2, "device": "auto"})
    table = rater.rate(TEXTS)
    assert rater.device == "cuda" and rater.model.dtype in (torch.bfloat16, torch.float16)
    assert table.column("quality_overall").to_pylist() == [4] * len(TEXTS)
    assert set(table.column("quality_domain").to_pylist()) == {"Finance"}
    rater.teardown()


def test_local_prompt_uses_the_chat_template(tiny_models):
    rater = LLMRater({"model": str(tiny_models["answer"]), "device": "cpu"})
    rater.setup()
    ids = rater._chat_ids("hello {text} <|im_end|>")
    text = rater.tokenizer.decode(ids)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n" + build_prompt("hello {text} <|im_end|>") + "<|im_end|>\n"
        "<|im_start|>assistant<|assistant|>"
    )
    # the control token inside the document is text, not the end-of-turn token
    assert ids.count(rater.tokenizer.convert_tokens_to_ids("<|im_end|>")) == 2
    rater.teardown()


def test_local_resume_cache(tiny_models, tmp_path):
    cache = tmp_path / "cache" / "shard.jsonl"
    rater = LLMRater({"model": str(tiny_models["answer"]), "device": "cpu"})
    ids = ["d0", "d1", "d2", "d3"]
    first = rater.rate_cached(ids[:2], TEXTS[:2], cache)
    calls = []
    real = rater.model.generate

    def counting(**kw):
        calls.append(kw["input_ids"].shape[0])
        return real(**kw)

    rater.model.generate = counting
    second = rater.rate_cached(ids, TEXTS, cache)
    assert calls == [2]  # only d2 and d3 were generated
    assert second.slice(0, 2).equals(first)
    assert set(read_cache(cache)) == set(ids)
    rater.teardown()


# ------------------------------------------------------------------------------------------------ HTTP backend


class FakeServer:
    """State of the loopback OpenAI-compatible server."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.paths: list[str] = []
        self.answers: dict[str, str] = {}  # document text -> answer (default GOOD)
        self.status: dict[str, int] = {}  # document text -> HTTP status, always
        self.fail_first = 0  # the first N requests get 503
        self.fail_status = 503
        self.delay = 0.0
        self.active = 0
        self.max_active = 0
        self.url = ""

    def texts(self) -> list[str]:
        return [_doc_text(b) for b in self.requests]


def _doc_text(body: dict[str, Any]) -> str:
    m = re.search(r"\nText: (.*)\nDomain:_\n", body["messages"][1]["content"], re.S)
    assert m, body
    return m.group(1)


def _handler(state: FakeServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.active += 1
                state.max_active = max(state.max_active, state.active)
                state.paths.append(self.path)
                state.auth.append(self.headers.get("Authorization"))
                fail = state.fail_first > 0
                state.fail_first -= fail
                if not fail:
                    state.requests.append(body)
            try:
                time.sleep(state.delay)
                if fail:
                    return self._send(state.fail_status, {"error": "busy"}, {"Retry-After": "0"})
                text = _doc_text(body)
                if text in state.status:  # an error body that echoes the request's headers, as some servers do
                    echo = {"message": "no", "headers": {"Authorization": self.headers.get("Authorization")}}
                    return self._send(state.status[text], {"error": echo})
                content = state.answers.get(text, GOOD)
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
            finally:
                with state.lock:
                    state.active -= 1

    return Handler


@pytest.fixture
def server():
    state = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def make_rater(server):
    made: list[LLMRater] = []

    def make(**kw) -> LLMRater:
        cfg = {"endpoint": server.url, "model_name": "dataman-1.5b", "backoff_s": 0.001, **kw}
        rater = LLMRater(cfg)
        made.append(rater)
        return rater

    yield make
    for r in made:
        r.teardown()


def test_http_request_body_and_answers(server, make_rater, monkeypatch):
    monkeypatch.setenv("WINNOW_TEST_LLM_KEY", "sekret-123")
    server.answers = {"partial": answer("C", [4] * 13), "garbage": "Sure! Here is my rating: 5/5"}
    rater = make_rater(api_key_env="WINNOW_TEST_LLM_KEY")
    table = rater.rate(["good", "partial", "garbage"])
    assert sorted(server.texts()) == ["garbage", "good", "partial"]
    for body in server.requests:
        text = _doc_text(body)
        assert body == {"model": "dataman-1.5b", "messages": build_messages(text), "temperature": 0, "max_tokens": 29}
    assert set(server.paths) == {"/v1/chat/completions"}
    assert set(server.auth) == {"Bearer sekret-123"}
    rows = table.to_pylist()  # input order, whatever the completion order
    assert rows[0]["quality_domain"] == "Finance" and rows[0]["quality_overall"] == 3
    assert rows[0]["quality_score"] == 3.0 and rows[0]["quality_accuracy"] == 4
    assert rows[1] == {**ALL_NULL, "quality_domain": "Law"}
    assert rows[2] == ALL_NULL
    assert rater.stats["malformed_answers"] == 2 and rater.stats["partial_answers"] == 1


def test_http_no_key_no_header_and_missing_env_var(server, make_rater, monkeypatch):
    make_rater().rate(["x"])
    assert server.auth == [None]
    monkeypatch.delenv("WINNOW_TEST_LLM_KEY", raising=False)
    with pytest.raises(ConfigError, match="WINNOW_TEST_LLM_KEY"):
        make_rater(api_key_env="WINNOW_TEST_LLM_KEY").setup()


def test_http_truncates_long_texts_by_characters(server, make_rater):
    rater = make_rater(max_prompt_tokens=10, chars_per_token=2.0)
    text = "abcdefghij" * 10
    rater.rate([text])
    assert server.texts() == [text[:10] + "..." + text[-10:]]
    assert rater.stats["truncated_texts"] == 1


def test_http_truncates_long_texts_with_a_local_tokenizer(server, make_rater, tiny_models):
    from transformers import AutoTokenizer

    rater = make_rater(max_prompt_tokens=20, tokenizer=str(tiny_models["garbage"]))
    text = "the quality of the data " * 50
    rater.rate([text])
    tok = AutoTokenizer.from_pretrained(str(tiny_models["garbage"]), local_files_only=True)
    assert server.texts() == [truncate_for_prompt(text, tok, 20)]
    assert server.texts()[0] != text and rater.stats["truncated_texts"] == 1


def test_an_error_body_that_echoes_the_api_key_never_prints_it(server, make_rater, monkeypatch):
    monkeypatch.setenv("WINNOW_TEST_LLM_KEY", "sekret-123")
    server.status = {"forbidden": 403}
    rater = make_rater(api_key_env="WINNOW_TEST_LLM_KEY")
    with pytest.raises(ConfigError) as err:
        rater.rate(["forbidden"])
    assert "HTTP 403" in str(err.value) and "<redacted>" in str(err.value)
    assert "sekret-123" not in str(err.value)
    assert server.auth == ["Bearer sekret-123"]  # the server did get the key (and echoed it)


def test_http_retries_with_backoff(server, make_rater):
    server.fail_first = 3
    rater = make_rater(max_retries=5, concurrency=1)
    table = rater.rate(["a", "b"])
    assert table.column("quality_overall").to_pylist() == [3, 3]
    assert rater.stats["requests_retried"] == 3 and rater.stats["requests_failed"] == 0


def test_http_retries_429(server, make_rater):
    server.fail_first, server.fail_status = 2, 429
    rater = make_rater(max_retries=2, concurrency=1)
    assert rater.rate(["a"]).column("quality_overall").to_pylist() == [3]
    assert rater.stats["requests_retried"] == 2


def test_http_backoff_is_exponential(server, make_rater):
    server.fail_first = 3
    rater = make_rater(max_retries=3, backoff_s=0.05, concurrency=1)
    t0 = time.perf_counter()
    rater.rate(["a"])
    assert time.perf_counter() - t0 >= 0.05 + 0.1 + 0.2 - 0.01


def test_http_gives_up_with_retryable_error(server, make_rater):
    server.fail_first = 1000
    rater = make_rater(max_retries=2, concurrency=2)
    with pytest.raises(RetryableError, match="HTTP 503"):
        rater.rate(["a", "b", "c"])
    assert rater.stats["requests_failed"] >= 1


def test_http_connection_refused_is_retryable(make_rater):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rater = make_rater(endpoint=f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.raises(RetryableError, match="ConnectionError"):
        rater.rate(["a"])


def test_http_document_errors_are_null_ratings(server, make_rater):
    server.status = {"too long": 400}
    rater = make_rater()
    table = rater.rate(["ok", "too long", "ok too"])
    assert table.column("quality_overall").to_pylist() == [3, None, 3]
    assert rater.stats["requests_failed"] == 1 and rater.stats["malformed_answers"] == 0


def test_http_auth_errors_stop_the_batch(server, make_rater):
    server.status = {"a": 401}
    with pytest.raises(ConfigError, match="401"):
        make_rater().rate(["a"])


def test_http_concurrency(server, make_rater):
    server.delay = 0.05
    rater = make_rater(concurrency=4)
    table = rater.rate([f"doc {i}" for i in range(16)])
    assert table.column("quality_overall").null_count == 0
    assert 1 < server.max_active <= 4


def test_http_resume_cache(server, make_rater, tmp_path):
    cache = tmp_path / "llm" / "shard-0.jsonl"
    ids = [f"id{i}" for i in range(10)]
    texts = [f"document {i}" for i in range(10)]
    server.answers = {"document 3": "garbage"}
    first = make_rater().rate_cached(ids[:5], texts[:5], cache)
    assert len(server.requests) == 5
    assert first.column("quality_overall").null_count == 1  # garbage is cached too: re-asking would not fix it

    # a kill left half a line; a document's text changed since
    with cache.open("ab") as f:
        f.write(b'{"id": "id9", "h": "0000", "an')
    texts[1] = "document 1, edited"
    server.requests.clear()
    rater = make_rater(batch_size=2)
    second = rater.rate_cached(ids, texts, cache)
    assert sorted(server.texts()) == sorted(["document 1, edited"] + texts[5:])
    assert rater.stats["cache_hits"] == 4
    assert second.slice(0, 1).equals(first.slice(0, 1))
    assert second.column("quality_overall").to_pylist() == [3, 3, 3, None, 3, 3, 3, 3, 3, 3]
    lines = cache.read_text().splitlines()
    assert all(json.loads(line)["id"] in ids for line in lines)  # the partial line was cut off

    # nothing left to ask
    server.requests.clear()
    third = make_rater().rate_cached(ids, texts, cache)
    assert server.requests == [] and third.equals(second)

    # another model's answers are not reused
    make_rater(model_name="other-model").rate_cached(ids[:2], texts[:2], cache)
    assert len(server.requests) == 2


def test_http_cache_shared_by_two_raters(server, make_rater, tmp_path):
    cache = tmp_path / "shard.jsonl"
    ids = [f"id{i}" for i in range(6)]
    texts = [f"document {i}" for i in range(6)]
    a, b = make_rater(), make_rater()
    a.rate_cached(ids[:3], texts[:3], cache)
    a.rate_cached(ids[:3], texts[:3], cache)  # from memory
    b.rate_cached(ids[3:], texts[3:], cache)  # another writer: a must read the file again
    server.requests.clear()
    assert a.rate_cached(ids, texts, cache).column("quality_overall").null_count == 0
    assert server.requests == [] and a.stats["cache_hits"] == 3 + 6


def test_http_failure_keeps_answers_for_the_resume(server, make_rater, tmp_path):
    cache = tmp_path / "shard.jsonl"
    ids = [f"id{i}" for i in range(8)]
    texts = [f"document {i}" for i in range(8)]
    server.status = {"document 6": 503}
    rater = make_rater(max_retries=1, concurrency=1, batch_size=100)
    with pytest.raises(RetryableError):
        rater.rate_cached(ids, texts, cache)
    cached = set(read_cache(cache))
    assert "id6" not in cached and cached >= {f"id{i}" for i in range(6)}

    server.status = {}
    server.requests.clear()
    table = make_rater().rate_cached(ids, texts, cache)
    assert set(server.texts()) == {texts[int(i[2:])] for i in set(ids) - cached}
    assert table.column("quality_overall").null_count == 0


def test_http_rate_is_a_table_of_the_batch_length(make_rater):
    rater = make_rater()
    empty = rater.rate([])
    assert empty.schema == QUALITY_SCHEMA and empty.num_rows == 0
    assert isinstance(empty, pa.Table)
