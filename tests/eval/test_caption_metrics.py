"""BLEU, ROUGE-L and CIDEr-D: hand-worked cases, pycocoevalcap 1.2's own numbers, direction, bad input."""

from __future__ import annotations

import math

import pytest

from xmodal.errors import DataError
from xmodal.eval.caption_metrics import bleu, caption_metrics, cider_d, lcs_length, rouge_l, tokenize

# ------------------------------------------------------------------------------------------ tokenize
# Expected tokens from stanford-corenlp-3.4.1's PTBTokenizer (-preserveLines -lowerCase), the jar shipped
# with pycocoevalcap 1.2, followed by pycocoevalcap's PUNCTUATIONS filter (ptbtokenizer.py).
PTB = {
    "A man's dog, sitting on the left.": "a man 's dog sitting on the left",
    "Two dogs don't play; they can't run -- or won't!": "two dogs do n't play they ca n't run or wo n't",
    '"Hello," she said... (a cat) [in a box] {ok}':  # the filter lists -LRB- upper-case: -lrb- survives
        "hello she said -lrb- a cat -rrb- -lsb- in a box -rsb- -lcb- ok -rcb-",
    "It's 3.5 meters from the U.S. border, Mr. Smith's t-shirt.":
        "it 's 3.5 meters from the u.s. border mr. smith 's t-shirt",
    "A black-and-white photo of 50% of $5 and AT&T rock & roll.":
        "a black-and-white photo of 50 % of $ 5 and at&t rock & roll",
    "The dogs' bowls aren't here? Yes: I'm sure we'll go, they'd've.":
        "the dogs bowls are n't here yes i 'm sure we 'll go they 'd 've",
    "She cannot stop; gonna wanna gotta lemme gimme.": "she can not stop gon na wan na got ta lem me gim me",
    "'Quoted' `back` it\u2019s \u201ccurly\u201d text \u2026 end": "quoted back it 's curly text end",
    "a/b 10:30 o'clock left,right word.word e-mail": "a/b 10:30 o'clock left right word.word e-mail",
    "1,000 people at 5pm, the '90s": "1,000 people at 5pm the '90s",
    "A plate of food: rice, beans and broccoli!!": "a plate of food rice beans and broccoli !!",
    "The man\u2014wearing a hat\u2014rides a horse \u2013 fast.": "the man wearing a hat rides a horse fast",
    "  Two giraffes standing next to each other in a field.  ": "two giraffes standing next to each other in a field",
}


@pytest.mark.parametrize("text", sorted(PTB))
def test_tokenize_matches_the_ptb_tokenizer_as_pycocoevalcap_runs_it(text: str) -> None:
    assert " ".join(tokenize(text)) == PTB[text]


def test_tokenize_of_nothing_and_of_punctuation_only() -> None:
    assert tokenize("") == [] and tokenize("  ...  , - ; ") == []


# ------------------------------------------------------------------------------------------ by hand
def test_identical_caption_scores_one_on_bleu_and_rouge() -> None:
    caption = "A cat sits on a mat."
    # every n-gram matches: each precision is (g + 1e-15) / (g + 1e-9), 1 to within 1e-9; no brevity penalty
    assert bleu([caption], [[caption]]) == pytest.approx([1.0] * 4, abs=1e-9)
    # LCS = 6 = both lengths: P = R = 1, F = (1 + b^2) P R / (R + b^2 P) = 1
    assert rouge_l([caption], [[caption]]) == pytest.approx(1.0)


def test_rouge_l_with_a_known_lcs() -> None:
    # "a cat on the mat" (5) vs "the black cat sat on the red mat" (8): LCS "cat on the mat" = 4
    assert lcs_length("a cat on the mat".split(), "the black cat sat on the red mat".split()) == 4
    # P = 4/5, R = 4/8: F = 2.44 * 0.8 * 0.5 / (0.5 + 1.44 * 0.8) = 0.976 / 1.652
    assert rouge_l(["a cat on the mat"], [["the black cat sat on the red mat"]]) == pytest.approx(0.976 / 1.652)
    # max precision and max recall come from different references: "a cat" gives R = 2/2, "the dog on a mat
    # today" gives P = 3/5 (LCS "on a mat"); F = 2.44 * 0.6 * 1 / (1 + 1.44 * 0.6) = 1.464 / 1.864
    assert rouge_l(["a cat on a mat"], [["a cat", "the dog on a mat today"]]) == pytest.approx(1.464 / 1.864)


def test_bleu_brevity_penalty_and_smoothing() -> None:
    # "a cat" (2 words) vs a 6-word reference: p1 = 2/2, p2 = 1/1, no 3- or 4-gram: p3 = p4 = 1e-15 / 1e-9 = 1e-6
    # BP = exp(1 - r/c) = exp(1 - 6/2) = exp(-2); BLEU-4 = (1 * 1 * 1e-6 * 1e-6) ** (1/4) * BP = 1e-3 * e^-2
    scores = bleu(["a cat"], [["a cat sits on the mat"]])
    assert scores[0] == pytest.approx(math.exp(-2), rel=1e-6)
    assert scores[1] == pytest.approx(math.exp(-2), rel=1e-6)
    assert scores[3] == pytest.approx(1e-3 * math.exp(-2), rel=1e-6)
    assert bleu(["a cat"], [["a cat sits on the mat"]], n=2) == pytest.approx(scores[:2])


def test_bleu_closest_reference_length_takes_the_shorter_on_a_tie() -> None:
    # 5 words, references of 4 and 6 words: both 1 away, the 4-word one counts (r = 4 < c = 5, no penalty);
    # every unigram is found in a reference: BLEU-1 = 1 (with the 6-word one it would be exp(1 - 6/5))
    assert bleu(["a red bus on road"], [["a red bus parked", "the red bus on the road"]])[0] == pytest.approx(1.0)


def test_cider_d_by_hand() -> None:
    # N = 2 samples: idf = log 2 - log df; every n-gram of "a b" has df = 1, so weights log 2 on both sides:
    # cosine 1 for 1- and 2-grams, 0 for the absent 3- and 4-grams, no length gap: 10 * mean(1, 1, 0, 0) = 5;
    # the second sample shares nothing (0); the corpus mean is 2.5
    assert cider_d(["a b", "c d"], [["a b"], ["e f"]]) == pytest.approx(2.5)
    # one sample: idf = log 1 - log 1 = 0 for every n-gram, CIDEr-D is 0 (as in pycocoevalcap)
    assert cider_d(["a b"], [["a b"]]) == 0.0


# ------------------------------------------------------------------------------------------ pycocoevalcap
SAMPLES = [
    ("A man riding a wave on top of a surfboard.",
     ["A man riding a wave on a surfboard.", "A surfer rides a large wave in the ocean.",
      "Person on a surfboard riding a wave."]),
    ("a dog a dog a dog a dog",  # repeated n-grams, clipped
     ["A dog runs across the grass.", "A brown dog running on a lawn."]),
    ("",  # an empty prediction
     ["Two giraffes standing in a field.", "A pair of giraffes next to trees."]),
    ("A plate of food with rice, beans and broccoli.",
     ["A plate with rice, beans, and broccoli on it.", "Food on a white plate.",
      "A healthy meal of rice and vegetables.", "Rice and beans with broccoli on a plate."]),
    ("kitchen",  # far shorter than its references
     ["A kitchen with a stove and a refrigerator.", "An empty kitchen with white cabinets."]),
    ("A cat laying on a bed next to a laptop computer; the cat's paw is on the keyboard.",  # longer
     ["A cat lying on a bed.", "A cat sleeps next to a laptop.", "The cat's paw rests on a laptop keyboard."]),
    ("a red bus on road",  # closest reference length tie (4 and 6 words for 5)
     ["a red bus parked", "The red bus on the road."]),
]
# values from pycocoevalcap 1.2 (Bleu(4), Rouge(), Cider() called directly, fed " ".join(tokenize(text)) of
# the samples above, not its Java tokenizer): corpus -> (sample indices, [BLEU-1..4], ROUGE-L, CIDEr-D)
PYCOCOEVALCAP = {
    "all": ([0, 1, 2, 3, 4, 5, 6], [0.7307692307551775, 0.6174713782795221, 0.5068264606266538, 0.3988809957302115],
            0.5165678775014492, 1.6235861644749754),
    "pair": ([0, 1], [0.6111111110771605, 0.5170697352190976, 0.42430361411149126, 0.3717427868557654],
             0.6559652268315952, 1.791151487854292),
    "one": ([0], [0.7999999999200001, 0.7302967432631348, 0.6436595896649729, 0.5814307368985977],
            0.9070631970260222, 0.0),
    "empty_and_short": ([2, 4], [1.670170075684248e-05, 1.6701700765193322e-08, 1.6701700767976945e-09,
                                 5.281541522979181e-10], 0.12655601659751037, 0.321830076903457),
    "repeats": ([1, 5, 3], [0.6666666666481482, 0.5504818825471942, 0.43233287815217825, 0.33077886667873535],
                0.5620279413203418, 1.0979826859765658),
    "closest_tie": ([6, 0, 4], [0.7254004783171754, 0.6452431306252374, 0.5731369079754993, 0.47759075877241813],
                    0.6432971061830396, 2.6045770588167607),
}


def _close(expected: float | list[float]) -> object:
    return pytest.approx(expected, rel=1e-9, abs=1e-12)  # well inside 1e-6, also for the tiny BLEU values


@pytest.mark.parametrize("corpus", sorted(PYCOCOEVALCAP))
def test_matches_pycocoevalcap(corpus: str) -> None:
    indices, bleus, rouge, cider = PYCOCOEVALCAP[corpus]
    predictions, references = [SAMPLES[i][0] for i in indices], [SAMPLES[i][1] for i in indices]
    assert bleu(predictions, references) == _close(bleus)
    assert bleu(predictions, references, n=2) == _close(bleus[:2])  # Bleu(2) gives the first two
    assert rouge_l(predictions, references) == _close(rouge)
    assert cider_d(predictions, references) == _close(cider)
    assert caption_metrics(predictions, references) == _close(
        {"BLEU-4": bleus[3], "BLEU-1": bleus[0], "ROUGE-L": rouge, "CIDEr-D": cider})


# ------------------------------------------------------------------------------------------ behaviour
def test_a_better_caption_scores_higher_on_every_metric() -> None:
    references = [SAMPLES[0][1], SAMPLES[1][1], SAMPLES[3][1]]
    rest = [SAMPLES[1][0], SAMPLES[3][0]]
    good = caption_metrics(["A man riding a wave on a surfboard.", *rest], references)
    fair = caption_metrics(["A man on a surfboard.", *rest], references)
    bad = caption_metrics(["A bowl of fruit on a wooden table.", *rest], references)
    for key in ("BLEU-4", "BLEU-1", "ROUGE-L", "CIDEr-D"):
        assert good[key] > fair[key] > bad[key], key
    assert set(good) == {"BLEU-4", "BLEU-1", "ROUGE-L", "CIDEr-D"}
    assert all(0.0 <= good[k] <= 1.0 for k in ("BLEU-4", "BLEU-1", "ROUGE-L")) and good["CIDEr-D"] > 1.0


def test_an_empty_prediction_scores_zero() -> None:
    scores = caption_metrics(["", "..."], [["a cat on a mat"], ["a dog on a rug"]])
    assert scores == {"BLEU-4": 0.0, "BLEU-1": 0.0, "ROUGE-L": 0.0, "CIDEr-D": 0.0}


@pytest.mark.parametrize("predictions, references, where", [
    (["a cat", "a dog"], [["a cat"]], "references"),
    (["a cat", "a dog"], [["a cat"], []], "references[1]"),
    (["a cat"], ["a cat"], "references[0]"),  # a string, not a list of captions
    ([], [], "predictions"),
])
def test_bad_input_raises_data_error(predictions: list[str], references: list, where: str) -> None:
    for metric in (caption_metrics, rouge_l, cider_d, bleu):
        with pytest.raises(DataError) as info:
            metric(predictions, references)
        assert info.value.source == where
