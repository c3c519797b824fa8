"""nmt_translation/model.py without training: shapes, masks, the incremental API, the learning
rate and the loss.

Small random models of both kinds: padding a batch further must not change any real position's
output; decoding step by step must give the logits of the one teacher-forced pass; the learning
rate must rise linearly to its peak at warmup_steps and fall as 1/sqrt(step) after, with T2T's
value there; label smoothing must be T2T's (a KL divergence: 0 at the smoothed target).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from nmt_translation import model as M  # noqa: E402

SOURCE_VOCAB, TARGET_VOCAB = 40, 30
# The first decoding step attends over one position; Keras warns about a softmax over one value.
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")


def small(kind: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    if kind == "attention":
        return M.build(M.Config.attention(SOURCE_VOCAB, TARGET_VOCAB, units=16))
    config = M.Config.transformer(
        SOURCE_VOCAB, TARGET_VOCAB, "transformer_tiny", d_model=16, num_heads=4, filter_size=32
    )
    return M.build(config)


@pytest.fixture(scope="module", params=["attention", "transformer"])
def model(request) -> keras.Model:
    return small(request.param)


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources with padding of different lengths, and targets (START first, padded too)."""
    rng = np.random.default_rng(seed)
    source = rng.integers(3, SOURCE_VOCAB, (3, 7)).astype("int32")
    source[0, 4:] = 0
    source[1, 6:] = 0
    target = rng.integers(3, TARGET_VOCAB, (3, 5)).astype("int32")
    target[:, 0] = 1
    target[2, 3:] = 0
    return source, target, rng.integers(3, TARGET_VOCAB, (3, 5))


def test_the_hparams_sets_are_t2ts() -> None:
    base, tiny = M.HPARAMS_SETS["transformer_base"], M.HPARAMS_SETS["transformer_tiny"]
    assert (base["num_layers"], base["d_model"], base["num_heads"], base["filter_size"]) == (
        6, 512, 8, 2048,
    )  # fmt: skip
    assert (base["dropout"], base["label_smoothing"], base["warmup_steps"]) == (0.1, 0.1, 8000)
    assert (tiny["num_layers"], tiny["d_model"], tiny["num_heads"], tiny["filter_size"]) == (
        2, 128, 4, 512,
    )  # fmt: skip
    config = M.Config.transformer(100, 90, "transformer_base")
    assert config.d_model == 512 and config.dropout == 0.1 and config.label_smoothing == 0.1


def test_shapes(model) -> None:
    source, target, _ = batch()
    logits = model((source, target))
    assert tuple(logits.shape) == (3, 5, TARGET_VOCAB)
    weights = ops.convert_to_numpy(model.attention_weights(source, target))
    assert weights.shape == (3, 5, 7)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)
    # No attention on padding.
    assert np.abs(weights[0, :, 4:]).max() < 1e-6 and np.abs(weights[1, :, 6:]).max() < 1e-6


def test_more_padding_changes_nothing(model) -> None:
    source, target, _ = batch()
    logits = ops.convert_to_numpy(model((source, target)))
    wider = ops.convert_to_numpy(model((np.pad(source, [[0, 0], [0, 5]]), target)))
    np.testing.assert_allclose(wider, logits, atol=1e-5)
    longer = ops.convert_to_numpy(model((source, np.pad(target, [[0, 0], [0, 3]]))))
    np.testing.assert_allclose(longer[:, :5], logits, atol=1e-5)


def test_a_later_target_token_cannot_change_an_earlier_output(model) -> None:
    """The causal mask (Transformer) and the GRU's direction (attention)."""
    source, target, _ = batch()
    logits = ops.convert_to_numpy(model((source, target)))
    changed = target.copy()
    changed[:, 3] = (changed[:, 3] + 1) % TARGET_VOCAB + 3
    other = ops.convert_to_numpy(model((source, changed)))
    np.testing.assert_allclose(other[:, :3], logits[:, :3], atol=1e-5)
    assert np.abs(other[:, 3:] - logits[:, 3:]).max() > 1e-4  # and a change does show later


def test_step_by_step_decoding_gives_the_teacher_forced_logits(model) -> None:
    source, target, _ = batch()
    target[2, 3:] = 7  # no padding inside what the steps are fed
    full = ops.convert_to_numpy(model((source, target)))
    encoded = model.encode(source)
    state = model.initial_state(encoded)
    steps = []
    for t in range(target.shape[1]):
        logits, state, attention = model.step(encoded, state, target[:, t])
        steps.append(ops.convert_to_numpy(logits))
        assert tuple(attention.shape) == (3, 7)
    np.testing.assert_allclose(np.stack(steps, 1), full, atol=1e-4)


def test_saved_and_loaded_models_agree(model, tmp_path) -> None:
    source, target, _ = batch()
    M.save(model, tmp_path)
    again = M.load(tmp_path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(again((source, target))),
        ops.convert_to_numpy(model((source, target))),
        atol=1e-6,
    )


def test_the_learning_rate_warms_up_to_its_peak_at_warmup_steps_then_decays() -> None:
    schedule = M.InverseSqrtSchedule(2.0, 512, 8000)
    # Keras' optimizer step k is T2T's step k + 1.
    rates = ops.convert_to_numpy(schedule(np.arange(40000))).astype("float64")
    assert int(np.argmax(rates)) + 1 == 8000
    peak = 2.0 / math.sqrt(8000) / math.sqrt(512)  # T2T's transformer_base: about 0.000988
    assert rates[7999] == pytest.approx(peak, rel=1e-5)
    assert rates[3999] == pytest.approx(peak / 2, rel=1e-5)  # linear warm-up
    assert rates[31999] == pytest.approx(peak / 2, rel=1e-5)  # 1/sqrt: 4x the steps, half
    for step in (1, 100, 8000, 12345):
        assert rates[step - 1] == pytest.approx(M.t2t_learning_rate(step, 2.0, 512, 8000))


def test_label_smoothing_is_t2ts_kl_divergence() -> None:
    vocab, e = 6, 0.1
    labels = np.array([[2, 4, 0]])  # the last is padding
    target = np.full((1, 3, vocab), e / (vocab - 1))
    target[0, 0, 2] = target[0, 1, 4] = 1 - e
    smoothed = M.MaskedCrossEntropy(e)
    # Logits whose softmax is the smoothed target: loss 0.
    assert float(smoothed(labels, np.log(target))) == pytest.approx(0.0, abs=1e-5)
    # Any other prediction costs more, also a more confident right one.
    confident = np.log(np.where(target > 0.5, 0.999, 0.001 / (vocab - 1)))
    assert float(smoothed(labels, confident)) > 0.1
    # Without smoothing it is the mean cross-entropy of the real tokens.
    logits = np.random.default_rng(0).normal(size=(1, 3, vocab))
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -(log_p[0, 0, 2] + log_p[0, 1, 4]) / 2
    assert float(M.MaskedCrossEntropy(0.0)(labels, logits)) == pytest.approx(expected, rel=1e-5)
    # Padding does not count, whatever the logits there.
    moved = logits.copy()
    moved[0, 2] += 100.0
    assert float(M.MaskedCrossEntropy(0.0)(labels, moved)) == pytest.approx(expected, rel=1e-5)


def test_batches_pad_and_shift_the_target() -> None:
    batches = M.Batches([[5, 6, 2], [7, 2]], [[9, 10], [11]], 2, start_id=1, end_id=2)
    (source, target_in), target_out = batches[0]
    assert source.shape == target_in.shape == target_out.shape == (2, 16)
    assert source[0, :4].tolist() == [5, 6, 2, 0] and source[1, :3].tolist() == [7, 2, 0]
    assert target_in[0, :3].tolist() == [1, 9, 10] and target_out[0, :3].tolist() == [9, 10, 2]
    assert target_in[1, :3].tolist() == [1, 11, 0] and target_out[1, :3].tolist() == [11, 2, 0]
    assert batches.tokens() == 3 + 2 + 3 + 2
