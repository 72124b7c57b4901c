"""Multiple-choice questions about a story of the built-in world (see :mod:`xmodal.experiments.world_stories`).

Every question needs the video, and most need the order of time: which colour or shape performs a
motion (``colour_of_mover``, ``shape_of_mover``), what an object does, against its time-reversed twin
(``motion_of``), which event comes first (``first_event``), how many shapes move, with a still
distractor in about half the stories (``count_movers``), and what happens after an event (``after``).
Each question has 4 choices, shuffled, its answer among them; wrong choices come from the story
first (other objects' colours and shapes, other events, the events with the reversed motion).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import numpy as np

from xmodal.experiments.world_render import COLOURS, MOTION_PHRASES, MOTIONS, SHAPES, pick, says, twin

KINDS = ("colour_of_mover", "shape_of_mover", "motion_of", "first_event", "count_movers", "after")
ORDERED = ("first_event", "after")  # kinds that need at least two events
COUNT_WORDS = ("one", "two", "three", "four")  # answers of count_movers (so at most 4 events a story)
QUESTIONS = {
    "colour_of_mover": ("what colour is the shape that is {motion}?", "what is the colour of the shape {motion}?"),
    "shape_of_mover": ("what shape is {motion}?", "which shape is {motion}?"),
    "motion_of": ("what does the {colour} {shape} do?", "how does the {colour} {shape} move?"),
    "first_event": ("which happens first?", "what happens first in the video?"),
    "count_movers": ("how many shapes move?", "how many of the shapes move at some point?"),
    "after": ("what happens after the {colour} {shape} {does}?", "what comes right after the {colour} {shape} {does}?"),
}
Asked = tuple[str, str, list[str]]  # question, answer, wrong choices (best first)
Pools = dict[str, tuple[tuple[str, ...], ...]]  # "colour" / "shape" -> the world's values, then all known ones


def twin_query(query: str, motion: str) -> str:
    """``query`` with the time-reversed motion ("the red circle moving left" -> "... moving right")."""
    for i, phrase in enumerate(MOTION_PHRASES[motion]):
        if phrase in query:
            return query.replace(phrase, MOTION_PHRASES[twin(motion)][i])
    raise ValueError(f"no phrase of {motion!r} in {query!r}")


def _shuffled(rng: np.random.Generator, items: list[str]) -> list[str]:
    return [items[i] for i in rng.permutation(len(items))]


def _event(rng: np.random.Generator, story: dict[str, Any], last: bool = True) -> tuple[int, dict[str, Any]]:
    i = int(rng.integers(len(story["events"]) - (0 if last else 1)))
    return i, story["events"][i]


def _of_mover(attr: str, rng: np.random.Generator, story: dict[str, Any], pools: Pools) -> Asked:
    """"what colour / shape is the shape that is <motion>?": wrong choices from the story's other objects,
    then the world's, then all known colours or shapes."""
    _, e = _event(rng, story)
    others = [o[attr] for o in story["objects"] if o[attr] != e[attr]]
    text = pick(rng, QUESTIONS[f"{attr}_of_mover"]).format(motion=pick(rng, MOTION_PHRASES[e["motion"]]))
    return text, e[attr], _shuffled(rng, others) + [x for pool in pools[attr] for x in _shuffled(rng, list(pool))]


def _motion_of(rng: np.random.Generator, story: dict[str, Any], pools: Pools) -> Asked:
    _, e = _event(rng, story)
    others = [x["motion"] for x in story["events"] if x is not e]
    text = pick(rng, QUESTIONS["motion_of"]).format(colour=e["colour"], shape=e["shape"])
    return text, e["motion"], [twin(e["motion"])] + _shuffled(rng, others) + _shuffled(rng, list(MOTIONS))


def _first_event(rng: np.random.Generator, story: dict[str, Any], pools: Pools) -> Asked:
    events = story["events"]
    reversed_ = [twin_query(e["query"], e["motion"]) for e in events]
    return pick(rng, QUESTIONS["first_event"]), events[0]["query"], [e["query"] for e in events[1:]] + reversed_


def _count_movers(rng: np.random.Generator, story: dict[str, Any], pools: Pools) -> Asked:
    answer = COUNT_WORDS[sum(o["moves"] for o in story["objects"]) - 1]
    return pick(rng, QUESTIONS["count_movers"]), answer, list(COUNT_WORDS)


def _after(rng: np.random.Generator, story: dict[str, Any], pools: Pools) -> Asked:
    i, e = _event(rng, story, last=False)
    events = story["events"]
    text = pick(rng, QUESTIONS["after"]).format(colour=e["colour"], shape=e["shape"], does=says(rng, e["motion"]))
    nxt = events[i + 1]
    others = [x["query"] for j, x in enumerate(events) if j not in (i, i + 1)]
    reversed_ = [twin_query(x["query"], x["motion"]) for x in (nxt, e)]
    return text, nxt["query"], others + [reversed_[0], e["query"], reversed_[1]]


ASK: dict[str, Callable[..., Asked]] = {
    "colour_of_mover": partial(_of_mover, "colour"), "shape_of_mover": partial(_of_mover, "shape"),
    "motion_of": _motion_of,
    "first_event": _first_event, "count_movers": _count_movers, "after": _after}


def _choices(rng: np.random.Generator, answer: str, wrong: list[str]) -> list[str]:
    """The answer and the first 3 distinct wrong choices, shuffled."""
    picked = [answer]
    for w in wrong:
        if w not in picked:
            picked.append(w)
    return _shuffled(rng, picked[:4])


def ask(story: dict[str, Any], rng: np.random.Generator, used: dict[str, int], colours: tuple[str, ...],
        shapes: tuple[str, ...]) -> list[dict[str, Any]]:
    """2-4 questions of distinct kinds about ``story``: the kinds least ``used`` so far in its split first
    (``used`` is updated), so kinds stay balanced across a split. Each: question, choices, answer, kind."""
    pools = {"colour": (tuple(colours), tuple(COLOURS)), "shape": (tuple(shapes), SHAPES)}
    kinds = [k for k in KINDS if len(story["events"]) > 1 or k not in ORDERED]
    ties = rng.permutation(len(kinds))
    kinds = sorted(kinds, key=lambda k: (used.get(k, 0), ties[kinds.index(k)]))
    out = []
    for kind in kinds[:int(rng.integers(2, 5))]:
        used[kind] = used.get(kind, 0) + 1
        text, answer, wrong = ASK[kind](rng, story, pools)
        out.append({"question": text, "choices": _choices(rng, answer, wrong), "answer": answer, "kind": kind})
    return out
