"""Is a retrieved chunk relevant to the question at all? (Not: which chunk is best — the ranking does that.)

Hybrid search fuses the dense and the BM25 ranking by RRF: the fused score says where a chunk
ranks, not whether it matches. A question with no answer in the knowledge base ("write me an
essay about autumn") still gets ``top_k`` chunks with RRF scores like any other question. Two
signals that do carry an absolute meaning are combined here:

- the dense cosine similarity of question and chunk (MiniLM: ~0.35-0.8 for a chunk that answers,
  below ~0.2 for an unrelated one, measured by tests/bench/relevance.py);
- the share of the question's keywords the chunk contains (BM25 terms; English stop words are
  dropped by the tokenizer, common Chinese function words here), which keeps Chinese questions
  working when the embedding model does not know Chinese.

They are weighted by how much of the question and the chunk the embedding model can read (the
share of their tokens it knows, squared): an English question over English text is judged by its
similarity, a Chinese question under the English MiniLM by its keywords. A chunk holding most of
the question's keywords is kept whatever its similarity (``KEYWORD_ALONE`` x the share): a rare
name or code searched for on its own has a low similarity to the sentence it is in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

# What the keyword share alone is worth (calibrated with the default minimum relevance 0.3 by
# tests/bench/relevance.py: all keywords -> 0.4, kept; three of four -> 0.3, kept; half -> 0.2, not).
KEYWORD_ALONE = 0.4

# Chinese function words and generic request words: the multilingual tokenizer keeps them as terms
# (it drops English stop words), and nearly every Chinese chunk contains some of them.
_ZH_STOP = (
    "的 了 是 在 我 你 他 她 它 们 和 与 及 或 也 就 都 而 吗 呢 吧 啊 呀 把 被 给 为 对 从 到 以 之 其 "
    "这 那 这个 那个 什么 怎么 怎样 如何 为什么 哪 哪些 哪里 谁 多少 几 有 没有 会 能 可以 要 想 请 "
    "一 一个 一下 一些 一首 一篇 一封 个 些 上 下 中 里 很 非常 最 更 还 又 再 不 没 关于 帮 帮我 "
    "写 讲 告诉 说 给我 用 做 吗？ 一点"
)


@lru_cache(maxsize=1)
def _stop_terms() -> frozenset[int]:
    from bubble_desktop.core.kb.store import sparse_query

    terms: set[int] = set()
    for word in _ZH_STOP.split():
        terms.update(int(i) for i in sparse_query(word)[0])
    return frozenset(terms)


def query_terms(indices: Iterable[int]) -> frozenset[int]:
    """The question's BM25 terms that count as keywords (function words left out)."""
    stop = _stop_terms()
    return frozenset(int(i) for i in indices if int(i) not in stop)


def keyword_share(keywords: frozenset[int], chunk_terms: frozenset[int]) -> float | None:
    """Share of the question's keywords found in the chunk; None when the question has none."""
    if not keywords:
        return None
    return len(keywords & chunk_terms) / len(keywords)


def cosine(a: Sequence[float], b: Sequence[float] | None) -> float | None:
    """Cosine similarity of two vectors (None when the store returned no vector)."""
    if b is None or len(a) != len(b) or not len(a):
        return None
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return float(dot / (na * nb)) if na and nb else None


def relevance(similarity: float | None, keyword: float | None, dense_weight: float) -> float:
    """One number in [0, 1]: similarity and keyword share weighted by how well the embedding
    model reads the question (``dense_weight``, 1.0 for an English question under MiniLM)."""
    w = max(0.0, min(1.0, dense_weight))
    sim = max(0.0, similarity) if similarity is not None else None
    if sim is None and keyword is None:
        return 1.0  # nothing to judge by (a store without vectors): keep it
    if sim is None:
        return keyword or 0.0
    if keyword is None:
        return sim
    return max(w * sim + (1.0 - w) * keyword, KEYWORD_ALONE * keyword)
