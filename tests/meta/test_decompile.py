"""Decompilation with evidence: the exact reader, the meta-model's checked search, the command line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import cli_env
from distill_tools import MAPPED, rotated_student, with_entry
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

import inverse_tracr.meta.decompile as decompile_module
from inverse_tracr.compile import fit
from inverse_tracr.compile.check import Behaviour
from inverse_tracr.compile.compiler import compile_program
from inverse_tracr.compile.model import BOS, PAD
from inverse_tracr.meta import search, vocab, weights
from inverse_tracr.meta.config import MetaConfig, SearchConfig
from inverse_tracr.meta.decompile import certify, decompile, model_from_sample, model_from_tracr
from inverse_tracr.meta.model import Decoding, MetaModel
from inverse_tracr.programs import Program
from inverse_tracr.zoo import read_samples
from inverse_tracr.zoo.sample import params_to_npz


def test_a_model_compiled_by_tracr_is_read_back_exactly():
    sop = lib.make_sort_unique(rasp.tokens, rasp.tokens)
    assembled = compiling.compile_rasp_to_model(sop, {1, 2, 3, 4}, 5, compiler_bos=BOS, compiler_pad=PAD)
    result = decompile(model_from_tracr(assembled))
    assert result.program == Program.from_rasp(sop, (1, 2, 3, 4), 5)
    evidence = result.evidence
    assert evidence.method == "reader" and evidence.verified and evidence.agreement == 1.0
    assert evidence.exhaustive and evidence.inputs == 4 + 16 + 64 + 256 + 1024
    # Tracr orders the residual stream by variable name: the user's names are not ours, so whether
    # the same weights come back cannot be asked (for a zoo sample it can: see the search test).
    assert evidence.identical_weights is None


@pytest.mark.parametrize("make", [lib.make_length, lib.make_hist, lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens)])
def test_a_model_compiled_from_our_program_is_certified_by_its_recompiled_weights(make):
    program = Program.from_rasp(make(), range(5), 5)  # canonical names; a SelectorWidth adds a hidden variable
    evidence = decompile(compile_program(program), method="reader").evidence
    assert evidence.verified and evidence.identical_weights is True


def test_the_search_finds_a_program_greedy_decoding_misses(zoo32, overfit, monkeypatch):
    model, _ = overfit
    samples = list(read_samples(str(zoo32 / "z/standard/shard-{000000..000001}.tar")))
    # A sample decoded right, with one Map line: its first table entry is where we make greedy go wrong.
    for sample in samples:
        ids = vocab.encode(sample.program)
        maps = [i for i, line in enumerate(sample.program.lines) if line.op == "Map"]
        if len(maps) == 1 and model.generate([sample.params])[0] == ids[1:]:
            break
    else:
        pytest.skip("no suitable sample")  # the overfit test above asserts how well it decodes
    compiled, threshold = model_from_sample(sample)
    position = ids.index(vocab.INDEX["Map"]) + 3  # op, arg1, arg2, fn
    with torch.no_grad():
        prefix = torch.tensor([ids[:position]])
        features = torch.from_numpy(weights.features(sample.params, model.config.weight_tokens)[:128])[None]
        logits = model(features, torch.ones(features.shape[:2]), prefix, torch.ones_like(prefix))[0, -1]
    grammar = vocab.Grammar(sample.program.vocab, sample.program.max_seq_len)
    for token in ids[1:position]:
        grammar.step(token)
    right = ids[position]
    advance = Decoding.advance

    def misled(wrong: int):
        """Decoding.advance that makes `wrong` the favourite at `position` only, the right token second
        (a boosted head bias would change every table with that entry)."""
        boost = float(logits[right] - logits[wrong]) + 0.5

        def step(self, tokens, entries=None):
            advance(self, tokens, entries)
            if self.step == position - 1:
                self.logits[:, wrong] += boost
        return step

    # Greedy decoding may still find an equivalent program, so take the most likely wrong entry
    # with which it does not.
    for wrong in sorted((t for t in grammar.allowed() if t != right), key=lambda t: -float(logits[t])):
        monkeypatch.setattr(Decoding, "advance", misled(wrong))
        greedy_only = decompile(compiled, model, "meta", threshold, SearchConfig(beam=1, repair_rounds=0))
        if not greedy_only.evidence.verified:
            break
    # a budget no machine reaches: what is tested is what the search finds, not how fast (~4 s)
    searched = decompile(compiled, model, "meta", threshold, SearchConfig(beam=4, repair_rounds=1, fit=False, budget_seconds=300))
    assert greedy_only.program != sample.program and not greedy_only.evidence.verified
    assert greedy_only.evidence.agreement < 1.0
    assert searched.program == sample.program and searched.evidence.verified and searched.evidence.candidates > 1
    assert searched.evidence.identical_weights is True and searched.evidence.found_by in ("beam", "repair")


def test_an_unverified_answer_says_so_with_its_best_agreement():
    program = Program.from_rasp(lib.make_hist(), range(5), 5)
    rotated = rotated_student(compile_program(program))
    rng = np.random.default_rng(0)  # every weight nudged: a natural student, which the reader cannot unfold
    natural = dataclasses.replace(rotated, params={k: v + rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in rotated.params.items()})
    untrained = MetaModel(MetaConfig(preset="tiny", max_chunks=128)).eval()
    result = decompile(natural, untrained, "auto", 1.0, SearchConfig(beam=2, repair_rounds=0))
    evidence = result.evidence
    assert evidence.method == "meta-model" and evidence.reader_refusal.startswith("not a compiled Tracr layout: a student")
    assert not evidence.verified and evidence.agreement < 1.0 and evidence.identical_weights is None
    assert decompile(natural, None, "reader").program is None  # the reader alone: no answer, no guess


def test_the_reader_decompiles_a_compressed_student_verified_by_its_weights(monkeypatch):
    program = Program.from_rasp(lib.make_hist(), range(5), 5)
    teacher = compile_program(program)
    narrow = rotated_student(teacher, width=teacher.layout.residual_width // 2)
    found = decompile(narrow, None, "auto", 0.9)
    evidence = found.evidence
    assert found.program == program and evidence.method == "reader" and evidence.reader_refusal is None
    assert evidence.verified and evidence.identical_weights is True and evidence.candidates == 1
    assert evidence.agreement == Behaviour.of(narrow).agreement(program).agreement and evidence.inputs > 0
    # A reading that, compiled again, would not fold into the student is no answer.
    monkeypatch.setattr(decompile_module, "_same_weights", lambda program, model: False)
    refused = decompile(narrow, None, "reader", 0.9)
    assert refused.program is None and "does not fold" in refused.evidence.reader_refusal


def test_a_model_the_reader_answers_never_imports_torch():
    """torch and transformers take ~8 s to import on 2 cores: only the meta-model's search needs them."""
    code = ("import sys\n"
            "from tracr.compiler import lib\n"
            "from inverse_tracr.compile.compiler import compile_program\n"
            "from inverse_tracr.meta.decompile import decompile\n"
            "from inverse_tracr.programs import Program\n"
            "found = decompile(compile_program(Program.from_rasp(lib.make_hist(), range(5), 5)))\n"
            "assert found.evidence.method == 'reader' and found.evidence.verified\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'imported'\n")
    done = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_a_students_answer_is_verified_by_its_weights_not_by_agreeing_as_well_as_the_student_did():
    exact = rotated_student(compile_program(MAPPED))  # a compressed student as faithful as its teacher
    behaviour = Behaviour.of(exact)
    output = MAPPED.lines[-1].fn
    # One output entry off: it agrees with the student on 93 % of outputs, as often as a student
    # that passed the gates would, but it is another program.
    wrong = with_entry(MAPPED, len(MAPPED.lines) - 1, next(i for i, v in enumerate(output) if output.count(v) > 1))
    assert 0.9 <= behaviour.agreement(wrong).agreement < 1.0
    assert certify(MAPPED, behaviour.agreement(MAPPED), exact, 0.9, behaviour.numerical) == (True, True)
    assert certify(wrong, behaviour.agreement(wrong), exact, 0.9, behaviour.numerical) == (False, False)
    # Every weight nudged: a student trained from scratch, which nothing certifies however it behaves.
    rng = np.random.default_rng(0)
    natural = dataclasses.replace(exact, params={k: v + rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in exact.params.items()})
    assert Behaviour.of(natural).agreement(MAPPED).agreement == 1.0
    assert certify(MAPPED, Behaviour.of(natural).agreement(MAPPED), natural, 0.9, False) == (False, False)
    standard = compile_program(MAPPED)  # a standard model: behaviour verifies, recompiling certifies
    assert certify(wrong, Behaviour.of(standard).agreement(wrong), standard, 1.0, False) == (False, None)
    assert certify(MAPPED, Behaviour.of(standard).agreement(MAPPED), standard, 1.0, False) == (True, True)


def test_the_cli_decompiles_a_sample_and_an_npz(small_zoo, tmp_path):
    shard = small_zoo / "small/standard/shard-000000.tar"
    run = lambda *args: subprocess.run([sys.executable, "-m", "inverse_tracr.cli", "decompile", *args], env=cli_env(),  # noqa: E731
                                       capture_output=True, text=True, timeout=300)
    shown = run(str(shard), "--index", "2", "--method", "reader", "--json")
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert result["evidence"]["method"] == "reader" and result["evidence"]["verified"]
    assert Program.from_json(result["program"]) == Program.from_json(result["true"])
    sample = list(read_samples(str(shard)))[2]
    (tmp_path / "model.npz").write_bytes(params_to_npz(sample.params))
    (tmp_path / "meta.json").write_text(json.dumps(sample.meta))
    text = run(str(tmp_path / "model.npz"), "--layout", str(tmp_path / "meta.json"), "--method", "reader")
    assert text.returncode == 0, text.stderr
    assert "decompiled (reader, VERIFIED)" in text.stdout and "recompiled to the same weights: True" in text.stdout
    refused = run(str(tmp_path / "model.npz"), "--method", "reader")
    assert refused.returncode == 1 and "--layout" in refused.stderr and "Traceback" not in refused.stderr


def test_repair_rounds_climb_from_the_best_candidates_not_forked_before_and_stop_when_none_is_closer(zoo32, overfit, monkeypatch):
    model, _ = overfit
    sample = next(iter(read_samples(str(zoo32 / "z/standard/shard-000000.tar"))))
    compiled, _ = model_from_sample(sample)
    forked, repair = [], search.repair

    def recorded(meta_model, params, candidate, *args):
        forked.append(candidate.program.id)
        return repair(meta_model, params, candidate, *args)

    class Rising(Behaviour):
        """Every new candidate agrees a little better than the last: the search never stops climbing."""

        checked = 0

        def agreement(self, program, groups=None):
            self.checked += 1
            return dataclasses.replace(super().agreement(program, groups), agreement=self.checked / 10_000)

    monkeypatch.setattr(search, "repair", recorded)
    config = SearchConfig(beam=2, repair_rounds=3, budget_seconds=60, fit=False)
    # an agreement above 1 is never reached, so only the climb decides how many rounds run
    result = decompile(compiled, model, "meta", 1.5, config, Rising.of(compiled))
    assert len(forked) > 2 and len(set(forked)) == len(forked)  # on after the first round (two a round at most), none twice
    assert result.evidence.candidates > 6 and not result.evidence.verified
    forked.clear()
    flat = decompile(compiled, model, "meta", 1.5, config)  # the real agreement: nothing gets closer than 1.0
    assert flat.evidence.agreement == 1.0 and 1 <= len(forked) <= 2  # one round, then it stops


def test_no_fit_starts_once_the_budget_is_spent(zoo32, overfit, monkeypatch):
    # A fit may take what is left of the budget; the candidates after it in the same round must then
    # not be fitted (on Tracr's sort, each late fit cost 0.3–0.5 s beyond a 2 s budget).
    model, _ = overfit
    samples = list(read_samples(str(zoo32 / "z/standard/shard-000000.tar")))
    compiled, _ = model_from_sample(samples[0])
    others = [search.Candidate([], -i, "beam", program=s.program) for i, s in enumerate(samples[1:5])]
    started = []

    def slow(program, behaviour, deadline):
        started.append(time.perf_counter() < deadline)
        time.sleep(max(0.0, deadline - time.perf_counter()))
        return None

    monkeypatch.setattr(search, "beam_search", lambda *args: others)
    monkeypatch.setattr(fit, "fit", slow)
    result = decompile(compiled, model, "meta", 1.5, SearchConfig(beam=4, repair_rounds=3, budget_seconds=3))
    assert result.evidence.candidates >= 4 and started == [True]


def test_every_decoder_stops_at_its_deadline(zoo32, overfit):
    # A beam search or repair started just before the deadline ran searches of the held-out zoo up to 1.3 s past it.
    model, _ = overfit
    sample = next(iter(read_samples(str(zoo32 / "z/standard/shard-000000.tar"))))
    args, shape = (model, sample.params), (sample.program.vocab, sample.program.max_seq_len)
    found = search.beam_search(*args, *shape, 4, deadline=time.perf_counter() + 60)
    assert found and found[0].ids == vocab.encode(sample.program)[1:]  # the overfit model's first choice
    assert search.repair(*args, found[0], *shape, 4, deadline=time.perf_counter() + 60)
    assert search.sample(*args, *shape, 4, deadline=time.perf_counter() + 60)
    past = time.perf_counter()
    assert search.beam_search(*args, *shape, 4, deadline=past) == []
    assert search.repair(*args, found[0], *shape, 4, deadline=past) == []
    assert search.sample(*args, *shape, 4, deadline=past) == []


def test_past_the_budget_only_the_answers_weights_are_compiled(zoo32, overfit, monkeypatch):
    # Compiling a candidate again takes 0.1–0.5 s: asked of every candidate that could verify, it
    # ran searches of the held-out zoo 1.5 s past a 2 s budget. Checking each of a late batch's
    # candidates (~30 ms each) ran them further: past the budget only the likeliest is checked.
    model, _ = overfit
    samples = list(read_samples(str(zoo32 / "z/standard/shard-000000.tar")))
    compiled, _ = model_from_sample(samples[0])
    config = SearchConfig(beam=4, repair_rounds=3, budget_seconds=1)
    late = [search.Candidate([], 1.0 - i, "beam", program=s.program) for i, s in enumerate(samples)]  # the first: likelier than greedy
    compiles = []

    class Agreeing(Behaviour):
        """Every candidate agrees, so every one could verify; none compiles to the model's weights."""

        def agreement(self, program, batch=None):
            return dataclasses.replace(super().agreement(program, batch), agreement=1.0, defined=1.0)

    def beam_past_the_budget(*args):
        time.sleep(config.budget_seconds)
        return late

    monkeypatch.setattr(search, "beam_search", beam_past_the_budget)
    monkeypatch.setattr(decompile_module, "_same_weights", lambda program, model: compiles.append(program) or False)
    monkeypatch.setattr(model, "generate", lambda *args, **kwargs: [vocab.encode(samples[1].program)[1:]])
    result = decompile(compiled, model, "meta", 1.0, config, Agreeing.of(compiled))
    assert result.evidence.candidates == 2 and result.evidence.verified
    # the greedy guess, checked within the budget, and the answer: the beam's likeliest, asked at the end
    # (the guess's output table read with this model's output labels, as the search reads it)
    guess = vocab.decode(vocab.encode(samples[1].program), samples[1].program.vocab, samples[1].program.max_seq_len, compiled.layout.output_values)
    assert compiles == [guess, samples[0].program] and result.program == samples[0].program
    assert result.evidence.identical_weights is False
