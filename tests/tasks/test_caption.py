"""The captioning task: word vocabulary, greedy and beam search, the prefix decoder overfitting a few
captions, a pretrained-LM folder (a tiny GPT-2 built here), the transfer contract with it, bad rows."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import xmodal
from xmodal.errors import ConfigError, DataError
from xmodal.tasks.caption import CaptionConfig, CaptionHead, CaptionTask, encode_captions, keyword_metrics
from xmodal.tasks.decoder import LMStepper, WordTokenizer, beam_search, greedy, scratch_lm, words

SENTENCES = ["the red circle moves left, then a blue square grows", "a green star stays still",
             "first the blue square shrinks, then the red circle moves up", "the yellow heart turns"]


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


# ---------------------------------------------------------------- vocabulary
def test_word_vocabulary_round_trips_and_marks_unknown_words():
    tok = WordTokenizer.build(SENTENCES)
    assert tok.vocab[:3] == ["<pad>", "<eos>", "<unk>"] and tok.vocab[3] == "the"  # most frequent first
    for s in SENTENCES:
        assert tok.decode(tok.encode(s)) == s
    assert tok.decode(tok.encode("The RED circle!")) == "the red circle <unk>"
    ids = tok.encode("a purple circle")
    assert ids[1] == tok.unk_id and tok.decode([*ids, tok.eos_id, 5, 6]) == "a <unk> circle"  # stops at the end token
    assert WordTokenizer(tok.vocab).vocab == tok.vocab  # rebuilt from the meta's list
    with pytest.raises(ConfigError):
        WordTokenizer(["a", "b"])


def test_long_captions_are_cut_and_counted():
    tok = WordTokenizer.build(SENTENCES)
    tokens, lengths, cut = encode_captions(tok, SENTENCES, 6)
    assert tokens.shape == (4, 7) and cut == 2 and lengths.tolist() == [7, 6, 7, 5]
    assert tokens[0, 6] == tok.eos_id and tokens[3, 5:].tolist() == [tok.pad_id, tok.pad_id]


# ---------------------------------------------------------------- search
class ToyLM:
    """A first-order Markov LM over 5 tokens (0 pad, 1 end): ``table[prev]`` are next-token log-probs; the
    first token's come from ``prefix[:, 0, 0]`` (an index into ``firsts``)."""

    def __init__(self, table: torch.Tensor, firsts: torch.Tensor) -> None:
        self.table, self.firsts = table.log_softmax(-1), firsts.log_softmax(-1)

    def start(self, prefix):
        return self.firsts[prefix[:, 0, 0].long()]

    def step(self, tokens):
        return self.table[tokens]

    def reorder(self, index):
        pass

    def score(self, prefix, ids, eos=1):
        out = []
        for p, row in zip(prefix[:, 0, 0].long(), ids.tolist()):
            total, prev = float(self.firsts[p, row[0]]), row[0]
            for t in row[1:]:
                if prev == eos or t == 0 and prev == 0:
                    break
                total, prev = total + float(self.table[prev, t]), t
            out.append(total)
        return torch.tensor(out)


def test_beam_search_beats_greedy_down_a_garden_path():
    neg = -9.0
    firsts = torch.tensor([[neg, neg, math.log(0.6), math.log(0.4), neg]])  # greedy takes token 2
    table = torch.full((5, 5), neg)
    table[2, 2:] = 0.0  # after 2: tokens 2, 3, 4 equally likely, the end unlikely
    table[3, 1] = 5.0  # after 3: almost surely the end
    table[4, 1] = 5.0
    lm, prefix = ToyLM(table, firsts), torch.zeros(1, 1, 1)
    g = greedy(lm, prefix, 4, eos=1, pad=0)
    b = beam_search(lm, prefix, 4, eos=1, pad=0, beams=2, length_penalty=0.0)
    assert g[0, 0] == 2 and b[0].tolist() == [3, 1, 0, 0]
    assert lm.score(prefix, b) > lm.score(prefix, g)


def test_beam_search_is_at_least_as_probable_and_beams_1_is_greedy():
    g = torch.Generator().manual_seed(0)
    lm = ToyLM(3 * torch.randn(5, 5, generator=g), 3 * torch.randn(6, 5, generator=g))
    prefix = torch.arange(6.0)[:, None, None]
    best_greedy = greedy(lm, prefix, 6, eos=1, pad=0)
    assert not (best_greedy == 0).all(1).any()  # padding is never a word
    assert torch.equal(beam_search(lm, prefix, 6, eos=1, pad=0, beams=1), best_greedy)
    for k in (2, 3, 5):
        beam = beam_search(lm, prefix, 6, eos=1, pad=0, beams=k, length_penalty=0.0)
        assert bool((lm.score(prefix, beam) >= lm.score(prefix, best_greedy) - 1e-6).all())


class Recompute:
    """A stepper without a key/value cache: the whole sequence through the LM at every step."""

    def __init__(self, lm):
        self.lm = lm

    def _logp(self):
        from xmodal.tasks.decoder import embed_tokens

        x = torch.cat([self.prefix, embed_tokens(self.lm, self.ids)], 1) if self.ids.shape[1] else self.prefix
        return self.lm(inputs_embeds=x, use_cache=False).logits[:, -1].float().log_softmax(-1)

    def start(self, prefix):
        self.prefix, self.ids = prefix, torch.zeros(len(prefix), 0, dtype=torch.long)
        return self._logp()

    def step(self, tokens):
        self.ids = torch.cat([self.ids, tokens[:, None]], 1)
        return self._logp()

    def reorder(self, index):
        self.prefix, self.ids = self.prefix[index], self.ids[index]


def test_cached_decoding_of_a_gpt2_equals_recomputing_it():
    torch.manual_seed(0)
    lm = scratch_lm(12, 32, 16, 2, 2, 0.0).eval()
    prefix = torch.randn(3, 2, 16)
    for beams in (1, 3):
        fast = beam_search(LMStepper(lm), prefix, 8, eos=1, pad=0, beams=beams)
        assert torch.equal(fast, beam_search(Recompute(lm), prefix, 8, eos=1, pad=0, beams=beams))
    assert torch.equal(greedy(LMStepper(lm), prefix, 8, 1, 0), beam_search(LMStepper(lm), prefix, 8, 1, 0, beams=1))


# ---------------------------------------------------------------- the head
def _fit(head: CaptionHead, seq, tokens, lengths, steps: int, lr: float = 3e-3) -> float:
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=lr)
    head.train()
    for _ in range(steps):
        loss = head.loss(seq, tokens, lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    return float(loss.detach())


@pytest.mark.parametrize("form,beams", [("frames", 1), ("frames", 3), ("transformer", 1), ("mlp", 1)])
def test_the_prefix_decoder_overfits_a_few_captions(form, beams):
    torch.manual_seed(0)
    task, cfg = CaptionTask(), CaptionConfig(width=32, layers=1, heads=2, prefix_length=2, mapper_layers=1, dropout=0.0,
                                             max_length=14, num_frames=4, beams=beams)
    rows = [{"path": f"{k}.mp4", "caption": s} for k, s in enumerate(SENTENCES)]
    meta = task.meta(rows, cfg)
    targets = task.targets(rows, meta, cfg, "rows")
    head = CaptionHead(8, meta, cfg, form)
    seq = torch.randn(4, 4, 8)
    assert head.video(seq).shape == (4, 2 + 4 * (form == "frames"), 32)
    assert _fit(head, seq, targets["tokens"], targets["lengths"], 150) < 0.05
    with torch.no_grad():
        out = head.generate(seq)
    assert out.dtype == torch.long and out.shape == (4, 15)
    assert [head.tokenizer.decode(r.tolist()) for r in out] == SENTENCES


def test_keyword_metrics_compare_the_named_keywords():
    refs = [["the red circle moves"], ["a blue star grows"], ["the green square"]]
    texts = ["the red circle moves", "a blue square grows", "the green square and a red heart"]
    m = keyword_metrics(texts, refs, ("red", "blue", "green", "circle", "star", "square"))
    assert m == {"keywords_exact": pytest.approx(1 / 3), "keywords_recall": pytest.approx(2 / 3),
                 "keywords_precision": pytest.approx(1 / 3)}
    assert keyword_metrics(["a red star"], [["a blue star", "a red star"]], ("red", "blue"))["keywords_exact"] == 1.0


def test_bad_rows_name_the_manifest_and_the_row():
    task, cfg = CaptionTask(), CaptionConfig()
    rows = [{"path": "a.mp4", "caption": "a red circle"}, {"path": "b.mp4", "caption": "  "}]
    with pytest.raises(DataError, match=r"caps.csv: row 2 \(b.mp4\): empty 'caption'"):
        task.targets(rows, task.meta(rows[:1], cfg), cfg, "caps.csv")
    with pytest.raises(DataError, match="train rows: row 2"):
        task.meta(rows, cfg)
    with pytest.raises(DataError, match="no column 'text'"):
        task.meta(rows, CaptionConfig(caption_column="text"))
    with pytest.raises(ConfigError, match="mapping"):
        task.meta(rows[:1], CaptionConfig(mapping="rnn"))


def test_rows_of_one_clip_share_references_and_long_captions_warn():
    task, cfg = CaptionTask(), CaptionConfig(max_length=3)
    rows = [{"path": "a.mp4", "caption": "a red circle"}, {"path": "a.mp4", "caption": "the red circle moves left"},
            {"path": "b.mp4", "caption": "a star"}]
    with pytest.warns(UserWarning, match="caps.csv: 1 of 3 captions have more than max_length=3"):
        t = task.targets(rows, task.meta(rows, cfg), cfg, "caps.csv")
    assert t["references"] == [["a red circle", "the red circle moves left"]] * 2 + [["a star"]]
    assert words("Left, then") == ["left", ",", "then"]


# ---------------------------------------------------------------- a pretrained LM by folder
@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    """A 1-layer width-16 GPT2LMHeadModel and a byte-level BPE tokenizer trained here on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(SENTENCES * 3 + ["a shape moving left", "a shape growing"], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    tok.save_pretrained(out)
    torch.manual_seed(0)
    eos = tok.eos_token_id
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                               bos_token_id=eos, eos_token_id=eos)).save_pretrained(out)
    return out


@pytest.mark.parametrize("train_lm", [True, False])
def test_a_pretrained_lm_loads_by_folder_trains_and_decodes(tiny_gpt2_dir, train_lm):
    torch.manual_seed(0)
    task = CaptionTask()
    cfg = CaptionConfig(lm=str(tiny_gpt2_dir), train_lm=train_lm, prefix_length=2, mapper_layers=1, width=16, heads=2,
                        max_length=24, num_frames=4, beams=2)
    rows = [{"path": f"{k}.mp4", "caption": s} for k, s in enumerate(SENTENCES[:2])]
    meta = task.meta(rows, cfg)
    assert "vocab" not in meta  # the LM's own tokenizer
    t = task.targets(rows, meta, cfg, "rows")
    head = CaptionHead(8, meta, cfg, "transformer")
    assert all(p.requires_grad == train_lm for p in head.lm.parameters())
    lm_before = {k: v.clone() for k, v in head.lm.state_dict().items()}
    seq = torch.randn(2, 4, 8)
    first = float(head.loss(seq, t["tokens"], t["lengths"]))
    assert _fit(head, seq, t["tokens"], t["lengths"], 60, lr=1e-2) < first
    assert all(torch.equal(lm_before[k], v) for k, v in head.lm.state_dict().items()) != train_lm
    with torch.no_grad():
        out = head.generate(seq)
    assert out.shape == (2, 25) and all(isinstance(head.tokenizer.decode(r.tolist()), str) for r in out)
    if train_lm:
        assert [head.tokenizer.decode(r.tolist()) for r in out] == SENTENCES[:2]


def test_an_unloadable_lm_is_a_config_error(tmp_path):
    task, rows = CaptionTask(), [{"path": "a.mp4", "caption": "a red circle"}]
    cfg = CaptionConfig(lm=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="nowhere"):
        task.targets(rows, task.meta(rows, cfg), cfg, "rows")


def _tiny_clip(out: Path) -> Path:
    path = Path(__file__).parents[1] / "backbones" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_tiny_hf_models_caption", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_hf_folder("clip", out)


@pytest.mark.parametrize("strategy,train_lm", [("zero_shot", False), ("linear_probe", False), ("temporal_head", True),
                                               ("lora", False)])
def test_contract_on_a_transformers_clip_with_a_tiny_gpt2(strategy, train_lm, tiny_gpt2_dir, tmp_path):
    """Only own parameters train (a frozen LM stays as it is), save -> load reproduces the outputs."""
    from xmodal.config import from_dict
    from xmodal.engine.fit import FitConfig, fit
    from xmodal.strategies import load_transfer, save_transfer
    from xmodal.strategies.data import ClipSet
    from xmodal.strategies.train import TransferConfig, build, clip_inputs, predict, training_step

    clip_dir = _tiny_clip(tmp_path / "clip")
    rows = [{"path": f"{k}.mp4", "caption": s} for k, s in enumerate(SENTENCES[:3])]
    options = {"lm": str(tiny_gpt2_dir), "train_lm": train_lm, "prefix_length": 2, "mapper_layers": 1, "width": 16,
               "heads": 2, "max_length": 16, "num_frames": 2, "beams": 2}
    cfg = TransferConfig(task="caption", strategy=strategy, task_options=options)
    task, tcfg = CaptionTask(), from_dict(CaptionConfig, options)
    meta = task.meta(rows, tcfg)
    vm = build(xmodal.load(str(clip_dir)), cfg, meta)
    data = ClipSet(torch.randn(3, 2, 3, 30, 30, generator=torch.Generator().manual_seed(0)), torch.arange(3),
                   task.targets(rows, meta, tcfg, "rows"), [r["path"] for r in rows], rows)
    before = {n: p.detach().clone() for n, p in vm.named_parameters()}
    trainable = {n for n, p in vm.named_parameters() if p.requires_grad}
    assert any(n.startswith("head.lm.") for n in trainable) == train_lm
    inputs = {k: v.detach() for k, v in clip_inputs(vm, data, 8).items()}
    if trainable:
        fit(training_step(vm, data, inputs), vm, [torch.arange(3)] * 2,
            FitConfig(epochs=1, lr=1e-2, progress=False, verbose=False, warmup_ratio=0))
    changed = {n for n, p in vm.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed <= trainable and bool(changed) == bool(trainable) == vm.trains
    vm.eval()
    with torch.no_grad():
        video, out = vm(data.pixels), predict(vm, data, clip_inputs(vm, data, 8))
    ids = out["tokens"]
    assert ids.dtype == torch.long and ids.shape == (3, 17) and ("log_likelihood" in out) == vm.trains
    save_transfer(vm, tmp_path / "t", clip_dir)
    loaded = load_transfer(tmp_path / "t")
    with torch.no_grad():
        assert torch.allclose(loaded(data.pixels), video, atol=1e-5)
        again = predict(loaded, data, clip_inputs(loaded, data, 8))
    assert torch.equal(again["tokens"], ids) and again.keys() == out.keys()
    if vm.trains:
        assert torch.allclose(again["log_likelihood"], out["log_likelihood"], atol=1e-5)
    metrics = task.metrics(loaded, out, data.targets)
    assert {"CIDEr-D", "BLEU-4", "ROUGE-L"} <= set(metrics) and ("log_likelihood" in metrics) == vm.trains
