"""Translate Spanish to English with a trained model: greedy decoding or beam search (t2t-decoder).

    python -m nmt_translation.translate --model-dir /tmp/nmt "¿Todavía está en casa?"
    python -m nmt_translation.translate --model-dir /tmp/nmt --greedy --input-file frases.txt

Both decoders work on batches of sentences and on token ids, through the models' incremental
API (`encode`, `initial_state`, `step`; nmt_translation/model.py), so they serve both models.

- `greedy`: at each step the most probable next token, until END or the length limit.
- `beam_search`: Tensor2Tensor's decode flags by default, beam 4 and alpha 0.6. A hypothesis
  is ranked by its log-probability divided by GNMT's length penalty ((5 + length) / 6) ** alpha,
  length counting END (T2T's beam_search.py). At each step the open hypotheses are extended by
  every token and the best `beam_size - finished` extensions by log-probability kept; one that
  ends in END (or reaches the limit) is finished and leaves the beam. The search stops when
  `beam_size` hypotheses are finished or no open one can still beat the best finished (its
  log-probability over the largest penalty it could reach). With beam 1 this is greedy decoding
  exactly (a test checks it).

Beam search can lose the greedy translation: when k other extensions outrank the greedy path at
some step it is pruned, and what the beam finishes with can score below it. `beam_search`
therefore also decodes greedily (a fraction of the beam's cost) and returns whichever of the two
the model scores higher by the same length-normalised log-probability (`keep_greedy=True`, the
default): beam search then never scores below greedy decoding for any sentence, which the tests
check by re-scoring both with the model by teacher forcing.

The length limit of a sentence is min(max_length, 2 * source tokens + 10) target tokens,
END included (T2T's decode length is the input length plus a constant, extra_length).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nmt_translation.cli import existing_path, fail, positive_int

if TYPE_CHECKING:
    import keras

    from nmt_translation.vocab import Vocab

BEAM_SIZE, ALPHA = 4, 0.6  # T2T's decode_hparams: beam_size=4, alpha=0.6 (utils/decoding.py)
MAX_LENGTH = 100
PAD_ID = 0  # nmt_translation.vocab's [PAD]
BATCH_SIZE = 64  # sentences per call of the model (beam search: times the beam)


@dataclass
class Hypothesis:
    """One translation in target ids, without START and END, and the model's opinion of it."""

    tokens: list[int]
    log_prob: float  # of the tokens, and of END when `ended`
    ended: bool  # the model chose END (False: it ran into the length limit)
    attention: np.ndarray | None = field(default=None, repr=False)  # (length, source_len)

    @property
    def length(self) -> int:
        return len(self.tokens) + int(self.ended)

    def score(self, alpha: float = ALPHA) -> float:
        """The length-normalised log-probability beam search ranks by."""
        return self.log_prob / length_penalty(self.length, alpha)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's ((5 + length) / 6) ** alpha, as in T2T's beam search."""
    return ((5.0 + length) / 6.0) ** alpha


def length_limit(source_length: int, max_length: int = MAX_LENGTH) -> int:
    """At most this many target tokens, END included, for a source of that many ids."""
    return max(1, min(max_length, 2 * source_length + 10))


def pad_batch(sequences: list[list[int]], pad_id: int = 0) -> np.ndarray:
    """(len(sequences), longest) int32, padded at the end."""
    out = np.full((len(sequences), max([1, *map(len, sequences)])), pad_id, dtype="int32")
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = seq
    return out


def _log_softmax(logits, never: tuple[int, ...] = ()) -> np.ndarray:
    """float64 log-probabilities; the ids in `never` (PAD, START: no translation contains
    them) are set to -inf so no decoder picks them, the others keep the model's values."""
    from keras import ops

    x = ops.convert_to_numpy(logits).astype("float64")
    x = x - x.max(axis=-1, keepdims=True)
    x = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    x[..., list(never)] = -np.inf
    return x


def _compiled(model: keras.Model) -> tuple:
    """(encode, step) of the model, as TensorFlow graphs when Keras runs on TensorFlow: a step
    called eagerly spends most of its time dispatching ops one at a time. reduce_retracing lets
    one graph serve every batch size and prefix length after the first few."""
    import keras

    cached = getattr(model, "_nmt_decoding_functions", None)
    if cached is None:
        cached = (model.encode, model.step)
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            cached = tuple(tf.function(f, reduce_retracing=True) for f in cached)
        model._nmt_decoding_functions = cached
    return cached


def _batches(sources: list[list[int]], batch_size: int) -> list[list[int]]:
    """Indices of the sources in batches of similar length (less padding), in a fixed order."""
    order = sorted(range(len(sources)), key=lambda i: (len(sources[i]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _greedy_batch(
    model: keras.Model,
    sources: list[list[int]],
    start_id: int,
    end_id: int,
    max_length: int,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    from keras import ops

    batch = len(sources)
    limits = [length_limit(len(s), max_length) for s in sources]
    encode, step = _compiled(model)
    encoded = encode(ops.convert_to_tensor(pad_batch(sources)))
    state = model.initial_state(encoded)
    tokens = np.full(batch, start_id, dtype="int32")
    hyps = [Hypothesis([], 0.0, False) for _ in range(batch)]
    weights: list[list[np.ndarray]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    for _ in range(max(limits)):
        logits, state, attention = step(encoded, state, ops.convert_to_tensor(tokens))
        log_probs = _log_softmax(logits, never=(PAD_ID, start_id))
        chosen = log_probs.argmax(axis=-1)
        attention = ops.convert_to_numpy(attention) if keep_attention else None
        for b in np.flatnonzero(~done):
            hyp, token = hyps[b], int(chosen[b])
            hyp.log_prob += log_probs[b, token]
            if keep_attention:
                weights[b].append(attention[b, : len(sources[b])])
            if token == end_id:
                hyp.ended = done[b] = True
            else:
                hyp.tokens.append(token)
                done[b] = len(hyp.tokens) >= limits[b]
        tokens = chosen.astype("int32")
        if done.all():
            break
    if keep_attention:
        for hyp, w in zip(hyps, weights, strict=True):
            hyp.attention = np.stack(w)
    return hyps


def greedy(
    model: keras.Model,
    sources: list[list[int]],
    start_id: int,
    end_id: int,
    max_length: int = MAX_LENGTH,
    batch_size: int = BATCH_SIZE,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """The most probable token at each step, for every source (lists of ids, END included)."""
    out: list[Hypothesis | None] = [None] * len(sources)
    for idx in _batches(sources, batch_size):
        hyps = _greedy_batch(
            model, [sources[i] for i in idx], start_id, end_id, max_length, keep_attention
        )
        for i, hyp in zip(idx, hyps, strict=True):
            out[i] = hyp
    return out  # type: ignore[return-value]


def _beam_batch(
    model: keras.Model,
    sources: list[list[int]],
    start_id: int,
    end_id: int,
    beam_size: int,
    alpha: float,
    max_length: int,
) -> list[Hypothesis]:
    from keras import ops

    batch, k = len(sources), beam_size
    limits = [length_limit(len(s), max_length) for s in sources]
    encode, step = _compiled(model)
    encoded = encode(ops.convert_to_tensor(pad_batch(sources)))
    encoded = {name: ops.repeat(t, k, axis=0) for name, t in encoded.items()}  # (batch * k, ...)
    state = model.initial_state(encoded)
    last = np.full(batch * k, start_id, dtype="int32")
    alive_tokens: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(batch)]
    alive_log_prob = np.full((batch, k), -np.inf)
    alive_log_prob[:, 0] = 0.0  # one open hypothesis to start from, not k copies of it
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    for _ in range(max(limits)):
        logits, state, _ = step(encoded, state, ops.convert_to_tensor(last))
        log_probs = _log_softmax(logits, never=(PAD_ID, start_id))
        vocab = log_probs.shape[-1]
        candidates = (alive_log_prob[:, :, None] + log_probs.reshape(batch, k, vocab)).reshape(
            batch, k * vocab
        )
        parents = np.zeros((batch, k), dtype="int64")
        new_tokens: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(batch)]
        new_log_prob = np.full((batch, k), -np.inf)
        for b in np.flatnonzero(~done):
            open_slots = k - len(finished[b])
            slot = 0
            # A stable sort: among equal scores the lowest index first, as argmax picks.
            for c in np.argsort(-candidates[b], kind="stable")[:open_slots]:
                score = candidates[b, c]
                if not np.isfinite(score):
                    break
                parent, token = divmod(int(c), vocab)
                prefix = alive_tokens[b][parent]
                if token == end_id:
                    finished[b].append(Hypothesis(list(prefix), float(score), True))
                elif len(prefix) + 1 >= limits[b]:
                    finished[b].append(Hypothesis([*prefix, token], float(score), False))
                else:
                    new_tokens[b][slot] = [*prefix, token]
                    new_log_prob[b, slot], parents[b, slot] = score, parent
                    last[b * k + slot] = token
                    slot += 1
            if slot == 0 or len(finished[b]) >= k:
                done[b] = True
            elif finished[b]:
                best = max(h.score(alpha) for h in finished[b])
                # An open hypothesis's log-probability only falls as it grows; the most its
                # score can reach is that over the largest penalty, at the length limit.
                bound = new_log_prob[b, :slot].max() / length_penalty(limits[b], alpha)
                done[b] = best >= bound
        if done.all():
            break
        rows = (np.arange(batch)[:, None] * k + parents).reshape(-1)
        state = [ops.take(t, ops.convert_to_tensor(rows), axis=0) for t in state]
        alive_tokens, alive_log_prob = new_tokens, new_log_prob
    # The first of the best on a tie: the one found earliest.
    return [max(f, key=lambda h: h.score(alpha)) for f in finished]


def beam_search(
    model: keras.Model,
    sources: list[list[int]],
    start_id: int,
    end_id: int,
    beam_size: int = BEAM_SIZE,
    alpha: float = ALPHA,
    max_length: int = MAX_LENGTH,
    batch_size: int = BATCH_SIZE,
    keep_greedy: bool = True,
) -> list[Hypothesis]:
    """The best hypothesis of a beam search per source (see the module for `keep_greedy`)."""
    out: list[Hypothesis | None] = [None] * len(sources)
    for idx in _batches(sources, batch_size):
        batch = [sources[i] for i in idx]
        hyps = _beam_batch(model, batch, start_id, end_id, beam_size, alpha, max_length)
        if keep_greedy and beam_size > 1:
            hyps = best_of(hyps, _greedy_batch(model, batch, start_id, end_id, max_length), alpha)
        for i, hyp in zip(idx, hyps, strict=True):
            out[i] = hyp
    return out  # type: ignore[return-value]


def best_of(
    beams: list[Hypothesis], greedies: list[Hypothesis], alpha: float = ALPHA
) -> list[Hypothesis]:
    """Per sentence, the greedy hypothesis where it scores higher, else the beam's."""
    return [
        g if g.score(alpha) > b.score(alpha) else b for b, g in zip(beams, greedies, strict=True)
    ]


def log_probabilities(
    model: keras.Model,
    sources: list[list[int]],
    hypotheses: list[Hypothesis],
    start_id: int,
    end_id: int,
) -> np.ndarray:
    """The model's log-probability of each hypothesis (END included when it ended), computed in
    one teacher-forced pass, independently of the decoders' step-by-step bookkeeping."""
    target_in = pad_batch([[start_id, *h.tokens] for h in hypotheses])
    target_out = pad_batch([[*h.tokens, end_id] for h in hypotheses])
    log_probs = _log_softmax(model((pad_batch(sources), target_in)))
    picked = np.take_along_axis(log_probs, target_out[..., None].astype("int64"), -1)[..., 0]
    lengths = np.array([h.length for h in hypotheses])
    real = np.arange(target_out.shape[1])[None, :] < lengths[:, None]
    return (picked * real).sum(axis=1)


class Translator:
    """A trained model and its two vocabularies: Spanish text in, English text out."""

    def __init__(self, model: keras.Model, source_vocab: Vocab, target_vocab: Vocab) -> None:
        self.model, self.source_vocab, self.target_vocab = model, source_vocab, target_vocab

    @classmethod
    def load(cls, folder: Path | str) -> Translator:
        """What train.py wrote: config.json, model.weights.h5, spa.json, eng.json."""
        from nmt_translation import model
        from nmt_translation.vocab import Vocab

        folder = Path(folder)
        missing = [
            name
            for name in (model.CONFIG_FILE, model.WEIGHTS_FILE, "spa.json", "eng.json")
            if not (folder / name).is_file()
        ]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: train a model into it")
        return cls(
            model.load(folder), Vocab.load(folder / "spa.json"), Vocab.load(folder / "eng.json")
        )

    def source_ids(self, sentence: str) -> list[int]:
        """A cleaned Spanish sentence's ids, END included (as in training)."""
        return [*self.source_vocab.encode(sentence), self.source_vocab.end_id]

    def decode_ids(
        self,
        sentences: list[str],
        beam_size: int = BEAM_SIZE,
        alpha: float = ALPHA,
        max_length: int = MAX_LENGTH,
        batch_size: int = BATCH_SIZE,
    ) -> list[Hypothesis]:
        """Hypotheses for cleaned sentences; beam_size 1 decodes greedily."""
        sources = [self.source_ids(s) for s in sentences]
        start, end = self.target_vocab.start_id, self.target_vocab.end_id
        if beam_size == 1:
            return greedy(self.model, sources, start, end, max_length, batch_size)
        return beam_search(
            self.model, sources, start, end, beam_size, alpha, max_length, batch_size
        )

    def translate(
        self,
        sentences: list[str],
        beam_size: int = BEAM_SIZE,
        alpha: float = ALPHA,
        max_length: int = MAX_LENGTH,
        batch_size: int = BATCH_SIZE,
    ) -> list[str]:
        """English for raw Spanish sentences (cleaned here as in training)."""
        from nmt_translation.data import preprocess

        cleaned = [preprocess(s) for s in sentences]
        hyps = self.decode_ids(cleaned, beam_size, alpha, max_length, batch_size)
        return [self.target_vocab.decode(h.tokens) for h in hyps]

    def attention(self, sentence: str, max_length: int = MAX_LENGTH) -> tuple:
        """(source pieces, translated pieces, weights (target, source)) of the greedy
        translation: the heat-map of where the model looked."""
        from nmt_translation.data import preprocess

        cleaned = preprocess(sentence)
        start, end = self.target_vocab.start_id, self.target_vocab.end_id
        (hyp,) = greedy(self.model, [self.source_ids(cleaned)], start, end, max_length, 1, True)
        source = [*self.source_vocab.tokens(cleaned), "[END]"]
        target = [self.target_vocab.tokenizer.id_to_token(i) for i in hyp.tokens]
        return source, target + (["[END]"] if hyp.ended else []), hyp.attention


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Translate Spanish sentences to English with a model train.py wrote.",
    )
    parser.add_argument(
        "--model-dir",
        type=existing_path,
        required=True,
        help="the folder train.py wrote (config.json, model.weights.h5, spa.json, eng.json)",
    )
    parser.add_argument(
        "sentences", nargs="*", help="Spanish sentences to translate (or use --input-file)"
    )
    parser.add_argument(
        "--input-file",
        type=existing_path,
        help="a UTF-8 text file, one Spanish sentence a line (default: none)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--greedy", action="store_true", help="greedy decoding instead of beam search"
    )
    mode.add_argument(
        "--beam-size",
        type=positive_int,
        default=BEAM_SIZE,
        help=f"hypotheses kept by beam search (default: {BEAM_SIZE}, as T2T)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=ALPHA,
        help=f"length penalty exponent, ((5 + length) / 6) ** alpha (default: {ALPHA}, as T2T)",
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        default=MAX_LENGTH,
        help=f"most target tokens per sentence, END included (default: {MAX_LENGTH})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=BATCH_SIZE,
        help=f"sentences decoded together (default: {BATCH_SIZE})",
    )
    args = parser.parse_args(argv)
    if not args.sentences and args.input_file is None:
        parser.error("give Spanish sentences to translate, or --input-file")
    if args.alpha < 0:
        parser.error(f"argument --alpha: must be >= 0, got {args.alpha}")
    return args


def main(argv: list[str] | None = None) -> list[str]:
    args = parse_args(argv)
    sentences = list(args.sentences)
    if args.input_file is not None:
        try:
            text = args.input_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            fail(f"cannot read --input-file {args.input_file}: {err}")
        sentences += [line for line in text.splitlines() if line.strip()]
    try:
        translator = Translator.load(args.model_dir)
    except (OSError, ValueError) as err:
        fail(f"{err}")
    beam = 1 if args.greedy else args.beam_size
    out = translator.translate(sentences, beam, args.alpha, args.max_length, args.batch_size)
    for line in out:
        print(line, flush=True)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
