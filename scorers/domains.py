"""DataMan domain of a document: the nearest domain in embedding space (DESIGN §3.6).

Each of the 15 DataMan domains has a one- or two-sentence description, a handful of keywords
(``DOMAIN_DESCRIPTIONS``) and eight short example texts in different genres (``DOMAIN_EXAMPLES``, in
``winnow.scorers.domain_examples``: a domain's documents come in many forms, which one description does not
span). The ``DomainClassifier`` embeds these "prototype texts" once, with the same ``Embedder`` (same model, same
config) that embedded the documents. A document's similarity to a domain is the mean of its ``TOP_K`` = 3 highest
cosine similarities with that domain's prototype texts (the description, the comma-joined keywords and the
examples); it gets the domain with the highest such similarity, and a document whose best similarity is below
``min_similarity`` goes to ``Other`` (nothing in the list fits it). The cost is one ``[n, d] x [d, 150]`` product
and a partial sort per batch, nothing next to embedding. On the nltk_data sources with a clear domain
(``bench/domains.py``: 8 groups, macro accuracy) the top-3 mean reached 89%, against 70% for one prototype per
domain from the description and keywords alone (the classifier before the examples), 85% for the mean of a
domain's texts (nearest centroid), 88% for the single best text and 85% for a softmax regression on the same
texts (its examples are not nltk_data text; see ``winnow.scorers.domain_examples``).

``Other`` also has a description of its own (casual conversation, chat, personal notes), so chat lands there.
Source code is the one domain defined by form rather than topic, and a general sentence encoder places code
badly (a JavaScript snippet lands nearer "Government" than "Coding" with MiniLM), so a text that looks like
code (``looks_like_code``: dense syntax characters plus programming keywords) is ``Coding`` by both routes.

Fallback without embeddings: keyword matching. Each domain's keyword set (its keywords plus a few more
unambiguous terms, ``_EXTRA_KEYWORDS``) is counted over the document's lower-cased words; the domain with the
most hits wins, ties go to the earlier domain letter, and a document with fewer than ``min_keyword_hits`` hits
is ``Other``. This is much cruder than the embedding route (no synonyms, no context) and exists so that a
pipeline without an embed stage still gets a domain column.

Prototype vectors are cached per (model, max_seq_length) in the process, so several raters share them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from winnow.scorers.base import DOMAINS
from winnow.scorers.domain_examples import DOMAIN_EXAMPLES

#: domain name → (description, keywords). The description says what belongs to the domain; keywords are typical
#: words of such documents. Both go into the domain's prototype text.
DOMAIN_DESCRIPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Medicine": (
        "Medicine and health care: diseases, symptoms, diagnosis and treatment, medicines and their doses and side "
        "effects, patients, doctors, nurses, hospitals and clinical studies.",
        ("patient", "doctor", "disease", "treatment", "tablets", "dose", "symptoms", "hospital", "clinical"),
    ),
    "Finance": (
        "Finance, business and the economy: markets, stocks and bonds, banks, interest rates, company earnings "
        "and deals, investment, trade, prices and taxes.",
        ("shares", "stock market", "bank", "investors", "profit", "earnings", "interest rates", "economy"),
    ),
    "Law": (
        "Law and the legal system: statutes, regulations, legal contracts and agreements, lawsuits, court "
        "rulings, attorneys and legal liability.",
        ("lawsuit", "plaintiff", "defendant", "attorney", "statute", "contract clause", "liability", "legal"),
    ),
    "Education": (
        "Education and learning: schools, universities, teachers and students, courses and curricula, exams, "
        "homework, teaching methods and study material.",
        ("students", "school", "teacher", "university", "classroom", "course", "learning", "exam"),
    ),
    "Technology": (
        "Technology, science and engineering: computers and software products, bugs and crashes, the internet, "
        "electronics and devices, scientific research and engineering.",
        ("software", "computer", "device", "internet", "browser", "bug", "scientists", "research", "engineering"),
    ),
    "Entertainment": (
        "Entertainment and media: films, television, music, celebrities, video games, sports, fiction and stories, "
        "humour and leisure.",
        ("film", "movie", "actor", "director", "music", "song", "show", "game", "comedy", "story"),
    ),
    "Mathematics": (
        "Mathematics: numbers, equations and formulas, proofs and theorems, functions, geometry, algebra, "
        "calculus, probability and statistics.",
        ("theorem", "proof", "equation", "function", "integer", "matrix", "probability", "lemma"),
    ),
    "Coding": (
        "Computer programming and source code: functions, classes and variables, programming languages such as "
        "Python, Java, C or JavaScript, compilers, APIs, libraries and software development.",
        (
            "def f(x): return x",
            "import numpy as np",
            "function() { }",
            "const x = require()",
            "#include <stdio.h>",
            "SELECT * FROM table WHERE",
            "class",
            "python",
            "api",
        ),
    ),
    "Government": (
        "Government and politics: presidents, congress and parliament, elections, public policy, national defence, "
        "public administration, official agencies and international relations.",
        ("president", "congress", "government", "nation", "policy", "federal", "election", "citizens"),
    ),
    "Culture": (
        "Culture, arts, history and religion: literature, poetry, drama and plays, painting, traditions, "
        "philosophy, faith, the Bible and scripture, and society.",
        ("art", "history", "religion", "god", "church", "poetry", "literature", "drama", "museum"),
    ),
    "Transportation": (
        "Transportation and travel: cars and roads, traffic, railways and trains, airlines and flights, ships and "
        "shipping, logistics, tourism and travel destinations.",
        ("car", "road", "traffic", "train", "flight", "airport", "travel", "vehicle", "ship", "tourists"),
    ),
    "Retail E-commerce": (
        "Retail and e-commerce: products for sale, shopping, prices and discounts, customer reviews of products, "
        "orders, delivery and online stores.",
        ("buy", "price", "product", "order", "shipping", "discount", "store", "customer", "purchase"),
    ),
    "Telecommunication": (
        "Telecommunication: telephone and mobile networks, carriers, broadband and cable, wireless and satellite "
        "communication, phone calls and messaging services.",
        ("phone", "mobile", "network", "wireless", "broadband", "cable", "telecom", "carrier", "signal"),
    ),
    "Agriculture": (
        "Agriculture and farming: crops, livestock, farmers, harvests, soil, irrigation, fertiliser, rural land, "
        "food production and fisheries.",
        ("farm", "farmers", "crop", "cattle", "wheat", "harvest", "rural", "soil", "livestock", "grain"),
    ),
    "Other": (
        "Everyday personal text that fits none of the other topics: casual conversation, chat messages, greetings, "
        "personal life, relationships and miscellaneous notes.",
        ("hello", "friend", "personal", "chat", "life", "love", "lol"),
    ),
}

#: extra unambiguous single words per domain, used only by the keyword fallback (which also counts the domain's
#: ``DOMAIN_DESCRIPTIONS`` keywords, so they are not repeated here)
_EXTRA_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Medicine": ("medicine", "pharmacist", "infection", "tablet", "capsules", "mg", "prescription", "therapy"),
    "Finance": ("dollar", "dollars", "stocks", "bonds", "inflation", "revenue", "fiscal", "investment", "market"),
    "Law": ("law", "clause", "hereby", "jurisdiction", "lawyer"),
    "Education": ("education", "teachers", "college", "curriculum", "pupils", "lecture", "academic"),
    "Technology": ("technology", "crash", "firefox", "windows", "server", "scientific", "laboratory", "electronic"),
    "Entertainment": ("films", "actors", "singer", "album", "television", "episode", "league", "team", "fans"),
    "Mathematics": ("equations", "theorems", "algebra", "geometry", "calculus", "polynomial", "derivative"),
    "Coding": ("javascript", "compiler", "github", "const", "print", "var", "int", "println", "struct", "async"),
    "Government": ("senate", "minister", "parliament", "administration", "governor", "congressional", "vote"),
    "Culture": ("poem", "painting", "faith", "lord", "heaven", "artist", "novel", "cultural"),
    "Transportation": ("railway", "airline", "trucks", "highway", "passengers", "cars", "freight", "bus"),
    "Retail E-commerce": ("sale", "shop", "shopping", "warranty", "refund", "checkout", "seller", "cart"),
    "Telecommunication": ("telephone", "cellular", "telecommunications", "carriers", "gsm", "sms"),
    "Agriculture": ("farming", "farmer", "crops", "sheep", "graziers", "irrigation", "fertiliser", "dairy"),
    "Other": (),
}

DOMAIN_NAMES: tuple[str, ...] = tuple(DOMAINS.values())
#: source code is recognised by its form: a density of syntax characters no prose reaches, plus keywords
_SYNTAX_CHARS = frozenset("{}()[];=<>_")
_CODE_TOKENS = re.compile(
    r"\b(def|return|import|function|const|var|let|include|public|static|void|int|printf|println|console|elif|"
    r"lambda|self|null|nil|struct|fn|func|package|SELECT|FROM|WHERE|GROUP BY|ORDER BY|INSERT|UPDATE)\b"
)
#: syntax characters per non-space character from which a text may be code (prose stays under ~2%)
CODE_SYNTAX_DENSITY = 0.06
_WORD = re.compile(r"[a-z][a-z'+#]*")
_PROTOTYPE_CACHE: dict[tuple[str, int, int], np.ndarray] = {}
#: a document's similarity to a domain is the mean of its TOP_K best similarities with the domain's texts
TOP_K = 3


def prototype_texts() -> tuple[list[str], list[str]]:
    """The texts embedded for each domain, in ``DOMAINS`` order: the descriptions and the keyword lists."""
    descs = [DOMAIN_DESCRIPTIONS[n][0] for n in DOMAIN_NAMES]
    keywords = [", ".join(DOMAIN_DESCRIPTIONS[n][1]) for n in DOMAIN_NAMES]
    return descs, keywords


def labelled_texts() -> tuple[list[str], np.ndarray]:
    """Every text that stands for a domain (description, keyword list, examples) and its domain index."""
    descs, keywords = prototype_texts()
    examples = [t for n in DOMAIN_NAMES for t in DOMAIN_EXAMPLES[n]]
    k = len(DOMAIN_NAMES)
    labels = [*range(k), *range(k), *(i for i, n in enumerate(DOMAIN_NAMES) for _ in DOMAIN_EXAMPLES[n])]
    return descs + keywords + examples, np.array(labels, dtype=np.int64)


def _torch_threads() -> int:
    """torch's CPU thread count now (the embedder sets it in ``setup``)."""
    import torch  # the embedder has loaded it by then

    return int(torch.get_num_threads())


def embed_prototypes(embedder) -> np.ndarray:
    """``[m, d]`` L2-normalised embeddings of the prototype texts, in ``labelled_texts()`` order."""
    texts, _ = labelled_texts()
    vecs = np.asarray(embedder.encode(texts), dtype=np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def domain_similarities(sims: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> np.ndarray:
    """``[n, 15]``: for each domain, the mean of the ``top_k`` highest of a document's similarities ``sims``
    ``[n, m]`` with that domain's prototype texts (``labels[j]`` is the domain of text ``j``)."""
    out = np.empty((sims.shape[0], len(DOMAIN_NAMES)), dtype=np.float32)
    for i in range(len(DOMAIN_NAMES)):
        s = sims[:, labels == i]
        k = min(top_k, s.shape[1])
        out[:, i] = np.partition(s, s.shape[1] - k, axis=1)[:, s.shape[1] - k :].mean(axis=1)
    return out


def _keyword_table() -> tuple[dict[str, int], list[tuple[tuple[str, ...], int]]]:
    """single word → domain index, and multi-word phrases → domain index."""
    words: dict[str, int] = {}
    phrases: list[tuple[tuple[str, ...], int]] = []
    for i, name in enumerate(DOMAIN_NAMES):
        if name == "Other":
            continue
        for kw in DOMAIN_DESCRIPTIONS[name][1] + _EXTRA_KEYWORDS[name]:
            parts = tuple(kw.lower().split())
            if len(parts) == 1:
                words.setdefault(parts[0], i)  # a word listed under two domains counts for the first
            else:
                phrases.append((parts, i))
    return words, phrases


_KW_WORDS, _KW_PHRASES = _keyword_table()


def looks_like_code(text: str) -> bool:
    """True for source code: syntax characters ``{}()[];=<>_`` at least ``CODE_SYNTAX_DENSITY`` of the non-space
    characters, and at least two distinct programming keywords (def, return, function, #include, SELECT, ...)."""
    non_space = sum(1 for c in text if not c.isspace())
    if not non_space or sum(1 for c in text if c in _SYNTAX_CHARS) < CODE_SYNTAX_DENSITY * non_space:
        return False
    return len(set(_CODE_TOKENS.findall(text))) >= 2


def keyword_domains(texts: Sequence[str], min_keyword_hits: int = 2) -> list[str]:
    """Domain by keyword counts (the fallback when no embeddings are given)."""
    other = DOMAIN_NAMES.index("Other")
    out: list[str] = []
    for text in texts:
        if looks_like_code(text):
            out.append("Coding")
            continue
        toks = _WORD.findall(text.lower())
        counts = np.zeros(len(DOMAIN_NAMES), dtype=np.int64)
        for t in toks:
            i = _KW_WORDS.get(t)
            if i is None and t.endswith("s"):
                i = _KW_WORDS.get(t[:-1])
            if i is not None:
                counts[i] += 1
        for parts, i in _KW_PHRASES:
            n = len(parts)
            counts[i] += sum(1 for j in range(len(toks) - n + 1) if tuple(toks[j : j + n]) == parts)
        best = int(np.argmax(counts))
        out.append(DOMAIN_NAMES[best] if counts[best] >= min_keyword_hits else DOMAIN_NAMES[other])
    return out


class DomainClassifier:
    """Nearest domain in embedding space (mean of the 3 best similarities with its prototype texts), with a keyword
    fallback.

    Args:
        embedder: a ``winnow.embedding.embed.Embedder`` configured like the one that embedded the documents (needed
            only for the embedding route; its model loads on ``setup()``).
        min_similarity: below this best cosine similarity a document is ``Other``.
        min_keyword_hits: below this many keyword hits the fallback says ``Other``.
    """

    def __init__(self, embedder=None, min_similarity: float = 0.05, min_keyword_hits: int = 2):
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.min_keyword_hits = min_keyword_hits
        self.prototypes: np.ndarray | None = None
        self.labels = labelled_texts()[1]

    def setup(self) -> None:
        """Embed the domain prototypes (once per process and model)."""
        if self.prototypes is not None or self.embedder is None:
            return
        self.embedder.setup()
        # every setting that changes the floats: the model and its embed settings, and the torch thread count (a
        # matrix product sums in another order with another count: a process that embedded the prototypes under
        # other settings must not hand them to this one)
        key = (
            self.embedder.cfg.model_dump_json(),
            int(self.embedder.max_seq_length),
            _torch_threads(),
        )
        if key not in _PROTOTYPE_CACHE:
            _PROTOTYPE_CACHE[key] = embed_prototypes(self.embedder)
        self.prototypes = _PROTOTYPE_CACHE[key]

    def similarities(self, embeddings: np.ndarray) -> np.ndarray:
        """``[n, 15]``: per domain, the mean of the ``TOP_K`` best cosine similarities of the L2-normalised
        document embeddings with the domain's prototype texts."""
        self.setup()
        if self.prototypes is None:
            raise ValueError("domain classification by embeddings needs an embedder (DomainClassifier(embedder=...))")
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.prototypes.shape[1]:
            raise ValueError(
                f"embeddings have shape {emb.shape}, the domain prototypes have dimension {self.prototypes.shape[1]}: "
                "embed the documents and the prototypes with the same model (the embed section of the config)"
            )
        return domain_similarities(emb @ self.prototypes.T, self.labels)

    def classify(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> list[str]:
        """Domain names for a batch: by embeddings when given, else by keywords."""
        if embeddings is None:
            return keyword_domains(texts, self.min_keyword_hits)
        if len(embeddings) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(embeddings)} embeddings")
        if len(texts) == 0:
            return []
        sims = self.similarities(embeddings)
        best = sims.argmax(axis=1)
        best_sim = sims[np.arange(len(best)), best]
        other = DOMAIN_NAMES.index("Other")
        best = np.where(best_sim < self.min_similarity, other, best)
        return ["Coding" if looks_like_code(t) else DOMAIN_NAMES[i] for t, i in zip(texts, best, strict=True)]
