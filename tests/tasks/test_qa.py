"""The qa task: choices and answers from rows (bad rows name the row), head shapes in both modes, the
question-only head ignoring the video, breakdown metrics, and a head that learns the order of events."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from xmodal.errors import ConfigError, DataError
from xmodal.tasks import TASKS
from xmodal.tasks.base import take
from xmodal.tasks.heads import HeadConfig
from xmodal.tasks.qa import QAConfig, QATask, qa_metrics
from xmodal.tasks.qa_heads import ZeroShotQA

DIM, WIDTH, FRAMES = 12, 10, 8
ROWS = [{"path": "a.mp4", "question": "which happens first?", "choices": ["x", "y", "z"], "answer": "y", "kind": "first",
         "held_out": True},
        {"path": "b.mp4", "question": "what colour?", "choices": "red|blue", "answer": "red", "kind": "colour",
         "held_out": False}]


class Stub(nn.Module):
    """What the qa task asks of a transferred model: fixed random text embeddings, frames in the space."""

    def __init__(self, cfg: QAConfig, rows=ROWS, trainable: bool = True, in_space: bool = True) -> None:
        super().__init__()
        self.embed_dim, self.seq_width, self.adapts_text = DIM, WIDTH, False
        self.frame_embed = "projection" if in_space else None
        self.base = nn.Module()
        self.base.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.task_config, self.meta = cfg, QATask().meta(rows, cfg)
        torch.manual_seed(0)
        self.head = QATask().head(self, self.meta, cfg, HeadConfig(), trainable)
        self.proj = torch.randn(WIDTH, DIM)

    def encode_texts(self, texts):
        seeds = [int(hashlib.md5(t.encode()).hexdigest()[:8], 16) for t in texts]
        out = torch.stack([torch.randn(DIM, generator=torch.Generator().manual_seed(s)) for s in seeds])
        return nn.functional.normalize(out, dim=-1)

    def frames_in_space(self, seq):
        return nn.functional.normalize(seq @ self.proj, dim=-1) if self.frame_embed else None


def test_targets_from_json_lists_and_bar_separated_choices():
    cfg = QAConfig(breakdown_columns=("kind", "held_out"))
    t = QATask().targets(ROWS, QATask().meta(ROWS, cfg), cfg, "qa.jsonl")
    assert t["choices"] == [["x", "y", "z"], ["red", "blue"]] and t["answer"].tolist() == [1, 0]
    assert t["group_kind"] == ["first", "colour"] and t["group_held_out"] == ["true", "false"]
    assert QATask().targets([{**ROWS[0], "choices": '["x", "y"]'}], {"mode": "choice"}, QAConfig(), "q")["answer"].tolist() == [1]


@pytest.mark.parametrize("change,message", [
    ({"answer": "w"}, "row 2 .*answer 'w' is not among its choices"),
    ({"question": " "}, "row 2 .*empty 'question'"),
    ({"choices": ["x"]}, "row 2 .*2 or more distinct"),
    ({"choices": "x|x"}, "row 2 .*2 or more distinct"),
    ({"choices": "[x, y"}, "row 2 .*not a JSON list"),
    ({"choices": 3}, "row 2 .*must be a list"),
])
def test_bad_rows_name_the_manifest_and_row(change, message):
    rows = [ROWS[0], {**ROWS[0], **change}]
    with pytest.raises(DataError, match=message) as err:
        QATask().targets(rows, {"mode": "choice"}, QAConfig(), "qa.csv")
    assert "qa.csv" in str(err.value)


def test_open_mode_vocabulary_and_unknown_test_answers_count_wrong():
    cfg = QAConfig(mode="open")
    meta = QATask().meta(ROWS, cfg)
    assert meta["answers"] == ["red", "y"]
    t = QATask().targets([{"question": "q", "answer": "y"}, {"question": "q", "answer": "never seen"}], meta, cfg, "t")
    assert t["answer"].tolist() == [1, -1]
    assert qa_metrics(torch.tensor([1, 0]), t["answer"], {})["accuracy"] == 0.5


def test_config_errors():
    with pytest.raises(ConfigError, match="mode"):
        QATask().meta(ROWS, QAConfig(mode="free"))
    with pytest.raises(ConfigError, match="multiple"):
        QATask().meta(ROWS, QAConfig(width=10, heads=4))
    with pytest.raises(ConfigError, match="similarity_heads"):
        QATask().meta(ROWS, QAConfig(similarity_heads=-1))
    with pytest.raises(ConfigError, match=r"qa.statement .*\{answer\}"):
        QATask().meta(ROWS, QAConfig(statement="{question} {answer}"))


@pytest.mark.parametrize("mode", ["choice", "open"])
@pytest.mark.parametrize("trainable,in_space", [(True, True), (True, False), (False, True)])
def test_scores_shapes_and_padding(mode, trainable, in_space):
    cfg = QAConfig(mode=mode, width=16, num_frames=FRAMES)
    model, task = Stub(cfg, trainable=trainable, in_space=in_space), QATask()
    if trainable:  # frames outside the shared space: the head learns a map into it
        assert (model.head.to_space is None) is in_space
    assert isinstance(model.head, ZeroShotQA) is not trainable
    batch = task.targets(ROWS, model.meta, cfg, "rows")
    seq = torch.randn(2, FRAMES, WIDTH)
    scores = task.scores(model, seq, batch)
    assert scores.shape == ((2, 3) if mode == "choice" else (2, 2))
    if mode == "choice":
        assert torch.isinf(scores[1, 2]) and bool(torch.isfinite(scores[:, :2]).all())
    out = task.predict(model, seq, batch)
    assert out["pred"].dtype == torch.long and bool((out["prob"] > 0).all())
    assert float(task.loss(model, seq, batch)["loss"].detach()) > 0


def test_question_only_head_never_sees_the_video():
    cfg = QAConfig(use_video=False, width=16, num_frames=FRAMES)
    model, task = Stub(cfg), QATask()
    batch = task.targets(ROWS, model.meta, cfg, "rows")
    model.eval()
    a, b = (task.scores(model, torch.randn(2, FRAMES, WIDTH), batch) for _ in range(2))
    assert torch.equal(a, b) and model.head.video(torch.randn(2, FRAMES, WIDTH)).shape == (2, 0)
    with_video = Stub(QAConfig(width=16, num_frames=FRAMES)).eval()
    c, d = (task.scores(with_video, torch.randn(2, FRAMES, WIDTH), batch) for _ in range(2))
    assert not torch.allclose(c, d)


def test_breakdown_keys():
    groups = {"kind": ["after", "after", "count"], "held_out": ["true", "false", "true"]}
    m = qa_metrics(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), groups)
    assert m == {"accuracy": pytest.approx(2 / 3), "accuracy_kind_after": 0.5, "accuracy_kind_count": 1.0,
                 "accuracy_held_out_true": 1.0, "accuracy_held_out_false": 0.0}


def _order_data(n: int, seed: int) -> tuple[torch.Tensor, list[dict]]:
    """Clips of two events (4 kinds, a random feature vector each) one after the other; "which happens
    first / last?" between the two: only the order of the frames tells."""
    g = torch.Generator().manual_seed(seed)
    events = torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(99)) * 2
    seq, rows = 0.3 * torch.randn(n, FRAMES, WIDTH, generator=g), []
    for i in range(n):
        a, b = torch.randperm(4, generator=g)[:2].tolist()
        seq[i, 1:4] += events[a]
        seq[i, 4:7] += events[b]
        last = bool(torch.rand(1, generator=g) < 0.5)
        choices = [f"event {a}", f"event {b}"][:: 1 if torch.rand(1, generator=g) < 0.5 else -1]
        rows.append({"question": "which happens last?" if last else "which happens first?", "choices": choices,
                     "answer": f"event {b if last else a}"})
    return seq, rows


def _train_and_test(cfg: QAConfig, steps: int = 150) -> float:
    train_seq, train_rows = _order_data(256, 0)
    test_seq, test_rows = _order_data(128, 1)
    return _fit_and_test(Stub(cfg, train_rows), (train_seq, train_rows), (test_seq, test_rows), steps)


def _fit_and_test(model: Stub, train_data, test_data, steps: int) -> float:
    """Train ``model``'s head on (seq, rows) ``train_data`` (batches of 32) and return its test accuracy."""
    task, cfg = TASKS.get("qa"), model.task_config
    (train_seq, train_rows), (test_seq, test_rows) = train_data, test_data
    train, test = (task.targets(r, model.meta, cfg, "rows") for r in (train_rows, test_rows))
    opt = torch.optim.AdamW(model.head.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randperm(len(train_rows), generator=g)[:32]
        loss = task.loss(model, train_seq[idx], take(train, idx))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return task.metrics(model, task.predict(model, test_seq, test), test)["accuracy"]


def test_fusion_learns_the_order_of_events_and_beats_the_question_only_head():
    torch.set_num_threads(1)
    cfg = QAConfig(width=32, layers=1, heads=2, num_frames=FRAMES, dropout=0.0)
    with_video = _train_and_test(cfg)
    question_only = _train_and_test(QAConfig(**{**cfg.__dict__, "use_video": False}))
    assert with_video >= 0.9 and question_only <= 0.65, (with_video, question_only)



class SignStub(Stub):
    """Frames enter the shared space through a fixed non-linear map (sign, then a projection), as through a
    pretrained tower's head: what a word looks like in the frames is that map of its code."""

    def __init__(self, cfg: QAConfig, rows=ROWS, words: tuple[str, ...] = ()) -> None:
        super().__init__(cfg, rows)
        g = torch.Generator().manual_seed(7)
        self.codes = {w: torch.randint(0, 2, (WIDTH,), generator=g).float() * 2 - 1 for w in words}

    def encode_texts(self, texts):
        known = [self.codes.get(t) for t in texts]
        out = torch.stack([nn.functional.normalize(c @ self.proj, dim=0) if c is not None else e
                           for c, e in zip(known, super().encode_texts(texts))])
        return out

    def frames_in_space(self, seq):
        return nn.functional.normalize(torch.sign(seq) @ self.proj, dim=-1)


WORDS = tuple(f"word {i}" for i in range(12)) + tuple(f"new {i}" for i in range(12))


def _seen_data(n: int, words: list[str], seed: int) -> tuple[torch.Tensor, list[dict]]:
    """"which one is shown?": frames 2-5 show the answer (its code, each frame at a random scale per feature),
    the other frames noise; 3 choices from ``words``."""
    g, stub = torch.Generator().manual_seed(seed), SignStub(QAConfig(num_frames=FRAMES), words=WORDS)
    seq, rows = torch.randn(n, FRAMES, WIDTH, generator=g), []
    for i in range(n):
        pick = torch.randperm(len(words), generator=g)[:3].tolist()
        seq[i, 2:6] = stub.codes[words[pick[0]]] * (0.1 + 3 * torch.rand(4, WIDTH, generator=g))
        rows.append({"question": "which one is shown?", "choices": [words[j] for j in sorted(pick)], "answer": words[pick[0]]})
    return seq, rows


def test_similarity_curves_answer_about_words_never_trained_on():
    """Choices never seen in training (held-out words): the frame-text similarity curves still find what is
    shown; the fusion without them has only what it learned of the training words."""
    torch.set_num_threads(1)
    train_seq, train_rows = _seen_data(256, list(WORDS[:12]), 0)
    test_seq, test_rows = _seen_data(128, list(WORDS[12:]), 1)
    accuracy = {}
    for similarity in (True, False):
        cfg = QAConfig(width=32, layers=1, heads=2, num_frames=FRAMES, dropout=0.0, similarity=similarity, statement="")
        accuracy[similarity] = _fit_and_test(SignStub(cfg, train_rows, WORDS), (train_seq, train_rows),
                                             (test_seq, test_rows), 100)
    assert accuracy[True] >= 0.95 and accuracy[False] <= 0.8, accuracy


def test_an_order_blind_strategys_head_scores_a_clip_and_its_time_reversal_alike():
    """The linear probe averages the frames: its similarity curves are the same at every frame too."""
    cfg = QAConfig(width=16, num_frames=FRAMES)
    task = QATask()
    for kind, blind in (("linear", True), ("transformer", False)):
        model = Stub(cfg)
        model.head = task.head(model, model.meta, cfg, HeadConfig(kind=kind), True).eval()
        batch = task.targets(ROWS, model.meta, cfg, "rows")
        seq = torch.randn(2, FRAMES, WIDTH)
        with torch.no_grad():
            same = torch.allclose(task.scores(model, seq, batch), task.scores(model, seq.flip(1), batch), atol=1e-5)
        assert same is blind, kind
