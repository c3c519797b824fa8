"""nmt_translation/translate.py with the two models the smoke runs trained (tests/conftest.py).

What "beam search never scores below greedy" compares, precisely: for each held-out Spanish
source, the model's log-probability of the whole translation (its tokens and END, when it ended)
divided by GNMT's length penalty ((5 + length) / 6) ** 0.6, length counting END, the score beam
search ranks by. Both translations are re-scored by one teacher-forced pass of the model
(`log_probabilities`), not taken from the decoders' own bookkeeping, so a decoder that
mis-adds its scores fails the test. The comparison runs on every test source of the sample.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nmt_translation import data
from nmt_translation.tests.conftest import REPO_ROOT
from nmt_translation.train import SPLIT_SEED
from nmt_translation.translate import (
    ALPHA,
    Hypothesis,
    Translator,
    beam_search,
    greedy,
    length_penalty,
    log_probabilities,
)

pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")


@pytest.fixture(scope="module", params=["attention", "transformer"])
def translator(request, trainings) -> Translator:
    return Translator.load(trainings[request.param].model_dir)


@pytest.fixture(scope="module")
def test_sources() -> list[str]:
    return list(data.split_by_source(data.load_sample(), SPLIT_SEED).test)


def ids(translator: Translator, sentences: list[str]) -> list[list[int]]:
    return [translator.source_ids(s) for s in sentences]


def test_beam_search_never_scores_below_greedy(translator, test_sources) -> None:
    model, end, start = translator.model, translator.target_vocab.end_id, 1
    sources = ids(translator, test_sources)
    greedy_hyps = greedy(model, sources, start, end)
    beam_hyps = beam_search(model, sources, start, end, beam_size=4, alpha=ALPHA)

    def scores(hyps: list[Hypothesis]) -> np.ndarray:
        log_p = log_probabilities(model, sources, hyps, start, end)
        return log_p / np.array([length_penalty(h.length, ALPHA) for h in hyps])

    greedy_scores, beam_scores = scores(greedy_hyps), scores(beam_hyps)
    assert np.all(beam_scores >= greedy_scores - 1e-6), np.flatnonzero(
        beam_scores < greedy_scores - 1e-6
    )
    # The decoders' own bookkeeping agrees with the model's teacher-forced scores.
    np.testing.assert_allclose([h.score() for h in beam_hyps], beam_scores, atol=1e-4)
    # And the beam does search: on some sentences it finds a translation greedy missed.
    assert np.sum(beam_scores > greedy_scores + 1e-6) >= 1


def test_beam_search_alone_mostly_beats_greedy_and_the_fallback_is_rare(
    translator, test_sources
) -> None:
    """Without keep_greedy, pruning can lose the greedy path: it must stay the exception."""
    model, end = translator.model, translator.target_vocab.end_id
    sources = ids(translator, test_sources)
    greedy_hyps = greedy(model, sources, 1, end)
    beams = beam_search(model, sources, 1, end, keep_greedy=False)
    worse = sum(b.score() < g.score() - 1e-9 for b, g in zip(beams, greedy_hyps, strict=True))
    assert worse <= 0.1 * len(sources), worse


def test_beam_1_is_greedy(translator, test_sources) -> None:
    model, end = translator.model, translator.target_vocab.end_id
    sources = ids(translator, test_sources[:64])
    for g, b in zip(
        greedy(model, sources, 1, end), beam_search(model, sources, 1, end, beam_size=1),
        strict=True,
    ):  # fmt: skip
        assert (g.tokens, g.ended) == (b.tokens, b.ended)
        assert g.log_prob == pytest.approx(b.log_prob, abs=1e-9)


def test_decoding_stops_at_end_and_respects_the_length_limit(translator, test_sources) -> None:
    model, end = translator.model, translator.target_vocab.end_id
    sources = ids(translator, test_sources[:32])
    for decode in (greedy, beam_search):
        full = decode(model, sources, 1, end)
        assert all(end not in h.tokens for h in full)
        assert sum(h.ended for h in full) >= 0.9 * len(full)  # a trained model ends them
        short = decode(model, sources, 1, end, max_length=3)
        assert all(h.length <= 3 and end not in h.tokens for h in short)
        assert any(not h.ended for h in short)
        if decode is greedy:  # a cut translation is the start of the uncut one
            for cut, whole in zip(short, full, strict=True):
                assert cut.tokens == whole.tokens[: len(cut.tokens)]


def test_batches_of_any_size_give_the_same_translations(translator, test_sources) -> None:
    sentences = test_sources[:20]
    one_batch = translator.translate(sentences, beam_size=4)
    small = translator.translate(sentences, beam_size=4, batch_size=3)
    assert one_batch == small
    assert translator.translate(sentences[:1], beam_size=4) == one_batch[:1]


def test_translations_are_english_text(translator) -> None:
    out = translator.translate(["¿Todavía está en casa?", "Lee el mapa, por favor."])
    assert all(isinstance(t, str) and t for t in out)
    source, target, weights = translator.attention("Lee el mapa, por favor.")
    assert weights.shape == (len(target), len(source))
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-4)


def test_the_cli_translates_a_sentence_and_a_file(trainings, tmp_path) -> None:
    folder = trainings["attention"].model_dir
    lines = tmp_path / "frases.txt"
    lines.write_text("Lee el mapa, por favor.\n\n¿Todavía está en casa?\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "nmt_translation.translate", "--model-dir", str(folder)]
    run = subprocess.run(
        [*cmd, "--greedy", "--input-file", str(lines), "Hola."],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.stdout.strip().splitlines()) == 3  # the argument, then the file's two lines
    bad = subprocess.run(
        [*cmd, "--beam-size", "0", "Hola."], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
