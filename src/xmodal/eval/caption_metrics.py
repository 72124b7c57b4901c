"""Captioning metrics BLEU, ROUGE-L and CIDEr-D, reproducing pycocoevalcap 1.2's scorers in pure Python.

- BLEU (Papineni et al., 2002, "BLEU: a method for automatic evaluation of machine translation"):
  corpus-level modified n-gram precision, as coco-caption's ``Bleu`` (``bleu_scorer.py``): option
  "closest" reference length (ties go to the shorter reference), one brevity penalty for the corpus, and
  its smoothing constants ``tiny = 1e-15`` (numerators) and ``small = 1e-9`` (denominators). BLEU-n is
  the geometric mean of the precisions of 1..n-grams.
- ROUGE-L (Lin, 2004, "ROUGE: a package for automatic evaluation of summaries"): per sample the
  longest common subsequence with each reference, the largest precision and the largest recall over the
  references (possibly from different references) combined as F with beta = 1.2; mean over samples.
- CIDEr-D (Vedantam et al., 2015, "CIDEr: Consensus-based image description evaluation"), as
  coco-caption's ``Cider``: tf-idf vectors of 1..4-grams whose document frequencies are counted over the
  references of the evaluated corpus (log of the number of samples as the corpus size), the hypothesis
  weight clipped to the reference's, a gaussian length penalty (sigma = 6), the mean over n, over the
  references and over samples, times 10.

Quirks of pycocoevalcap reproduced on purpose (so that numbers match published COCO tables):

- CIDEr-D's "length" in the length penalty is the number of *bigrams* of a caption (``n == 1`` is the
  bigram index in ``counts2vec``), so a 0-word and a 1-word caption have the same length;
- CIDEr-D of a corpus of one sample is 0: its idf is ``log(1) - log(df) = 0`` for every n-gram;
- ROUGE-L splits a caption on ``" "``, so an empty caption is one empty token (it scores 0 against a
  non-empty reference, 1 against an empty one); BLEU and CIDEr-D split on whitespace;
- :func:`tokenize` follows Stanford's PTBTokenizer 3.4.1 run with ``-lowerCase`` and then pycocoevalcap's
  ``PUNCTUATIONS`` filter. Because the filter lists the bracket escapes upper-case (``-LRB-``) while the
  tokenizer lowercases them, brackets survive as ``-lrb-``, ``-rrb-``, ``-lsb-``... tokens; runs such as
  ``!!`` or ``?!`` survive too (only single ``!``/``?`` are in the list).

:func:`tokenize` is a regular-expression approximation of the Java tokenizer (no Java needed), checked
against it on caption-like text: clitics (``dog's`` -> ``dog 's``, ``don't`` -> ``do n't``), ``cannot``
and ``gonna``-like words, attached punctuation, ``$``/``%``/``#``, numbers with ``,``/``.``/``:`` inside,
hyphenated words and abbreviations (``u.s.``, ``mr.``) kept whole. Rarer PTB rules (``y'all``, ``'tis``,
``rock'n'roll``, context-dependent abbreviations such as ``no.``) are not reproduced.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from xmodal.errors import DataError

# pycocoevalcap/tokenizer/ptbtokenizer.py, verbatim (upper-case escapes included, see the module docstring)
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_SPLIT_WORDS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"],
                "wanna": ["wan", "na"], "lemme": ["lem", "me"], "gimme": ["gim", "me"]}
_ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr vs etc inc co ltd mt prof".split())
_SEPARATORS = [  # (pattern, replacement) applied in order to the lowercased text
    (re.compile(r"[\u2018\u2019]"), "'"),
    (re.compile(r"[\"\u201c\u201d]|\.\.\.+|\u2026|--+|[\u2013\u2014]|;"), " "),  # tokens the filter removes
    (re.compile(r"[()\[\]{}]"), lambda m: f" {_BRACKETS[m.group()]} "),
    (re.compile(r"[?!]+|[$%#]"), r" \g<0> "),
    (re.compile(r"(?<!\d)[,:]|[,:](?!\d)"), " "),  # kept inside numbers: 1,000 and 10:30
]
_LEADING = re.compile(r"^(?:[-`]|'(?!\d))+")  # '90s keeps its apostrophe
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_KEEP_WHOLE = frozenset([*_BRACKETS.values(), "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"])
_INITIALS = re.compile(r"(?:[a-z]\.)+")  # u.s. a.m. i.e. x.

TINY, SMALL = 1e-15, 1e-9  # bleu_scorer.py: "so that if guess is 0 still return 0"
ROUGE_BETA = 1.2
CIDER_SIGMA = 6.0


def tokenize(text: str) -> list[str]:
    """Lowercased PTB-style tokens of ``text`` without pycocoevalcap's punctuation tokens."""
    text = text.lower()
    for pattern, replacement in _SEPARATORS:
        text = pattern.sub(replacement, text)
    return [token for chunk in text.split() for token in _split_chunk(chunk) if token not in PUNCTUATIONS]


def _split_chunk(chunk: str) -> list[str]:
    """The tokens of one whitespace-free chunk: edge punctuation dropped, clitics split off."""
    if chunk in _KEEP_WHOLE:
        return [chunk]  # an escape or a detached clitic ("dog 's")
    core = _LEADING.sub("", chunk)
    while core:
        if core.endswith(".") and not (_INITIALS.fullmatch(core) or core[:-1] in _ABBREVIATIONS):
            core = core[:-1]
        elif core.endswith(("-", "`", "'")):
            core = core[:-1]
        else:
            break
    clitics: list[str] = []
    while match := _CLITIC.match(core):
        core, clitic = match.groups()
        clitics.insert(0, clitic)
    return _SPLIT_WORDS.get(core, [core] if core else []) + clitics


# ------------------------------------------------------------------------------------------ inputs
def _prepare(predictions: list[str], references: list[list[str]]) -> tuple[list[list[str]], list[list[list[str]]]]:
    """Tokenized predictions and references, after checking that every prediction has references."""
    if len(predictions) != len(references):
        raise DataError("references", f"{len(references)} reference lists for {len(predictions)} predictions")
    if not predictions:
        raise DataError("predictions", "no captions to score")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise DataError(f"references[{i}]", "a string; expected a list of reference captions")
        if len(refs) == 0:
            raise DataError(f"references[{i}]", "no reference caption for this prediction")
    return [tokenize(p) for p in predictions], [[tokenize(r) for r in refs] for refs in references]


def _ngrams(words: list[str], n: int) -> Counter:
    """Counts of every k-gram of ``words`` for k = 1..n, as tuples."""
    return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


# ------------------------------------------------------------------------------------------ BLEU
def bleu(predictions: list[str], references: list[list[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..BLEU-n of ``predictions`` against their ``references`` (pycocoevalcap's ``Bleu``)."""
    return _bleu(*_prepare(predictions, references), n)


def _bleu(hyps: list[list[str]], refs: list[list[list[str]]], n: int) -> list[float]:
    """BLEU-1..n on tokens: clipped n-gram matches, closest reference length, corpus brevity penalty."""
    correct, guess = [0] * n, [0] * n
    hyp_len = ref_len = 0
    for hyp, sample_refs in zip(hyps, refs):
        max_counts: Counter = Counter()
        for ref in sample_refs:
            max_counts |= _ngrams(ref, n)  # element-wise max
        for gram, count in _ngrams(hyp, n).items():
            correct[len(gram) - 1] += min(count, max_counts[gram])
        for k in range(n):
            guess[k] += max(0, len(hyp) - k)
        hyp_len += len(hyp)
        ref_len += min((abs(len(ref) - len(hyp)), len(ref)) for ref in sample_refs)[1]
    scores, product = [], 1.0
    for k in range(n):
        product *= float(correct[k] + TINY) / (guess[k] + SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio = (hyp_len + TINY) / (ref_len + SMALL)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


# ------------------------------------------------------------------------------------------ ROUGE-L
def rouge_l(predictions: list[str], references: list[list[str]]) -> float:
    """Mean ROUGE-L F (beta 1.2) of ``predictions`` against their ``references`` (pycocoevalcap's ``Rouge``)."""
    return _rouge_l(*_prepare(predictions, references))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            diagonal, row[j] = row[j], diagonal + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def _rouge_sample(hyp: list[str], refs: list[list[str]]) -> float:
    """ROUGE-L F of one caption: the best precision and the best recall over its references."""
    hyp = hyp or [""]  # pycocoevalcap splits on " ": "" is one empty token
    precision = recall = 0.0
    for ref in refs:
        ref = ref or [""]
        lcs = lcs_length(ref, hyp)
        precision, recall = max(precision, lcs / len(hyp)), max(recall, lcs / len(ref))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + ROUGE_BETA ** 2) * precision * recall / (recall + ROUGE_BETA ** 2 * precision)


def _rouge_l(hyps: list[list[str]], refs: list[list[list[str]]]) -> float:
    return float(np.mean([_rouge_sample(hyp, sample_refs) for hyp, sample_refs in zip(hyps, refs)]))


# ------------------------------------------------------------------------------------------ CIDEr-D
def cider_d(predictions: list[str], references: list[list[str]]) -> float:
    """Mean CIDEr-D (x10, coco's scale) of ``predictions`` against their ``references`` (pycocoevalcap's ``Cider``)."""
    return _cider_d(*_prepare(predictions, references))


def _tfidf(counts: Counter, df: Counter, log_corpus: float, n: int) -> tuple[list[dict], list[float], int]:
    """Per-order tf-idf vectors, their norms, and the caption's length as pycocoevalcap counts it (bigrams)."""
    vectors: list[dict] = [{} for _ in range(n)]
    for gram, tf in counts.items():
        vectors[len(gram) - 1][gram] = float(tf) * (log_corpus - math.log(max(1.0, df[gram])))
    norms = [math.sqrt(sum(w * w for w in vec.values())) for vec in vectors]
    length = sum(tf for gram, tf in counts.items() if len(gram) == 2)
    return vectors, norms, length


def _cider_sim(hyp: tuple[list[dict], list[float], int], ref: tuple[list[dict], list[float], int],
               n: int) -> np.ndarray:
    """Per-order clipped cosine similarity of two tf-idf vectors times the gaussian length penalty."""
    (hyp_vec, hyp_norm, hyp_len), (ref_vec, ref_norm, ref_len) = hyp, ref
    penalty = math.exp(-float(hyp_len - ref_len) ** 2 / (2 * CIDER_SIGMA ** 2))
    val = np.zeros(n)
    for k in range(n):
        val[k] = sum(min(w, ref_vec[k].get(g, 0.0)) * ref_vec[k].get(g, 0.0) for g, w in hyp_vec[k].items())
        if hyp_norm[k] != 0 and ref_norm[k] != 0:
            val[k] /= hyp_norm[k] * ref_norm[k]
        val[k] *= penalty
    return val


def _cider_d(hyps: list[list[str]], refs: list[list[list[str]]], n: int = 4) -> float:
    """CIDEr-D on tokens, with document frequencies over the references of this corpus."""
    ref_counts = [[_ngrams(ref, n) for ref in sample_refs] for sample_refs in refs]
    df: Counter = Counter(gram for sample in ref_counts for gram in set().union(*sample))
    log_corpus = math.log(float(len(refs)))
    scores = []
    for hyp, sample_counts in zip(hyps, ref_counts):
        hyp_vec = _tfidf(_ngrams(hyp, n), df, log_corpus, n)
        total = sum((_cider_sim(hyp_vec, _tfidf(c, df, log_corpus, n), n) for c in sample_counts), np.zeros(n))
        scores.append(float(np.mean(total)) / len(sample_counts) * 10.0)
    return float(np.mean(scores))


# ------------------------------------------------------------------------------------------ all
def caption_metrics(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    """BLEU-4, BLEU-1, ROUGE-L (in [0, 1]) and CIDEr-D (coco's x10 scale) of ``predictions``.

    ``references[i]`` lists the reference captions of ``predictions[i]``; raw text, tokenized here with
    :func:`tokenize`. A :class:`~xmodal.errors.DataError` if the lengths differ or a sample has no reference.
    """
    hyps, refs = _prepare(predictions, references)
    bleus = _bleu(hyps, refs, 4)
    return {"BLEU-4": bleus[3], "BLEU-1": bleus[0], "ROUGE-L": _rouge_l(hyps, refs), "CIDEr-D": _cider_d(hyps, refs)}
