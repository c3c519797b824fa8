"""Train a Spanish-to-English translator in one process (t2t-trainer, then t2t-decoder and t2t-bleu).

    python -m nmt_translation.train --sample --model attention --model-dir /tmp/nmt-attention
    python -m nmt_translation.train --sample --model transformer --hparams-set transformer_tiny \\
        --warmup-steps 200 --model-dir /tmp/nmt-transformer
    python -m nmt_translation.train --model transformer --model-dir /tmp/nmt   # the full data

The pairs are split by Spanish sentence (nmt_translation/data.py: no source is in two parts;
the split's seed is fixed, SPLIT_SEED, so runs with other --seed values are scored on the same
sources) and the subword vocabularies are built from the training pairs only. After each epoch
the validation sources are translated greedily and scored against all their references:
`val_bleu` is what Katib maximises. At the end the test sources are translated greedily and by
beam search (beam 4, alpha 0.6, as T2T's decoder) and scored with sacrebleu (BLEU and chrF,
multi-reference), beside the copy-the-input baseline and a bootstrap interval of the beam's BLEU.

Metrics go to stdout as `name=value` lines, one set per epoch and a final set (Katib's StdOut
collector), and to metrics.json in --model-dir beside the model (config.json,
model.weights.h5), the vocabularies (spa.json, eng.json) and history.json (every epoch's values).

The flags are checked before TensorFlow is imported (about 10 s), so a mistake gets its one-line
answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nmt_translation import data
from nmt_translation.cli import fail, output_dir, positive_float, positive_int, seed

if TYPE_CHECKING:
    import keras

    from nmt_translation.vocab import Vocab

# Written out rather than imported from model.py, which imports Keras (about 10 s): a test checks
# they equal model.MODELS and model.HPARAMS_SETS.
MODELS = ("attention", "transformer")
HPARAMS_SETS = ("transformer_base", "transformer_tiny")
SPLIT_SEED = 0  # the train/valid/test split does not move with --seed
MIN_VOCAB_SIZE = 66  # nmt_translation.vocab: the specials and the alphabet twice
FINAL_LINES = (
    "val_bleu",
    "test_bleu",
    "test_chrf",
    "test_bleu_low",
    "test_bleu_high",
    "test_bleu_greedy",
    "test_chrf_greedy",
    "copy_bleu",
    "copy_chrf",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a Spanish-to-English translator (the tutorial's GRU with attention,"
        " or a Transformer configured like Tensor2Tensor's) in one process.",
    )
    data.add_data_arguments(parser)  # --sample, --data-file, --data-dir, --url
    parser.add_argument(
        "--model-dir",
        type=output_dir,
        default=Path("model"),
        help="where the model, vocabularies, metrics.json and history.json go (default: model)",
    )
    parser.add_argument(
        "--model", choices=MODELS, default="transformer", help="which model (default: transformer)"
    )
    parser.add_argument(
        "--hparams-set",
        choices=HPARAMS_SETS,
        default="transformer_base",
        help="the Transformer's size, as T2T's sets of that name (default: transformer_base)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=10, help="passes over the data (default: 10)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="sentence pairs per step (default: 64)"
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=None,
        help="attention: Adam's step size (default: 0.001, Keras' Adam as the tutorial);"
        " transformer: the constant of T2T's schedule, constant * min(1, step / warmup) *"
        " rsqrt(max(step, warmup)) * d_model ** -0.5 (default: 2.0, as T2T)",
    )
    parser.add_argument(
        "--warmup-steps",
        type=positive_int,
        default=None,
        help="transformer: steps of linear warm-up, where the rate peaks (default: 8000, T2T's)",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout rate (default: 0.1 for the transformer, as T2T; 0 for attention, as the"
        " tutorial)",
    )
    parser.add_argument(
        "--units",
        type=positive_int,
        default=256,
        help="attention: embedding and GRU size (default: 256, the tutorial's UNITS)",
    )
    parser.add_argument(
        "--vocab-size",
        type=positive_int,
        default=8000,
        help="subword pieces per language, learnt from the training pairs (default: 8000)",
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        default=100,
        help="most target tokens a translation may have, END included (default: 100)",
    )
    parser.add_argument("--seed", type=seed, default=42, help="random seed (default: 42)")
    args = parser.parse_args(argv)
    if args.dropout is not None and not 0 <= args.dropout < 1:
        parser.error(f"argument --dropout: must be >= 0 and < 1, got {args.dropout}")
    if args.vocab_size < MIN_VOCAB_SIZE:
        parser.error(f"argument --vocab-size: must be >= {MIN_VOCAB_SIZE}, got {args.vocab_size}")
    return args


def report(metrics: dict[str, float]) -> None:
    """Print metrics as name=value lines; repr keeps every digit, so stdout and JSON agree."""
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)


def progress_bar() -> bool:
    """Keras' progress bar on a terminal; one line per epoch in a log, a pod or a notebook."""
    return sys.stdout.isatty()


def encode(pairs: list[tuple[str, str]], spa: Vocab, eng: Vocab) -> tuple[list, list]:
    """Source ids (END appended, as T2T appends EOS to its inputs) and target ids."""
    return [[*spa.encode(s), spa.end_id] for s, _ in pairs], [eng.encode(e) for _, e in pairs]


def translations(model: keras.Model, sources: list[str], spa: Vocab, eng: Vocab, args, beam: int):
    """(greedy hypotheses, beam hypotheses or None) for cleaned Spanish sentences."""
    from nmt_translation import translate

    ids = [[*spa.encode(s), spa.end_id] for s in sources]
    greedy = translate.greedy(model, ids, eng.start_id, eng.end_id, args.max_length)
    if beam <= 1:
        return greedy, None
    beams = translate.beam_search(
        model, ids, eng.start_id, eng.end_id, beam, max_length=args.max_length, keep_greedy=False
    )
    return greedy, beams


class ValidationBleu:
    """After each epoch: greedy translations of the validation sources, BLEU and chrF, added
    to Keras' logs (so history and the printed lines carry them); the time spent is kept apart
    from the training time."""

    def __init__(self, valid: dict[str, list[str]], spa: Vocab, eng: Vocab, args) -> None:
        self.sources, self.references = list(valid), list(valid.values())
        self.spa, self.eng, self.args = spa, eng, args
        self.seconds = 0.0

    def callback(self, model: keras.Model) -> keras.callbacks.Callback:
        import keras

        from nmt_translation import evaluate

        def on_epoch_end(epoch: int, logs: dict | None = None) -> None:
            start = time.perf_counter()
            greedy, _ = translations(model, self.sources, self.spa, self.eng, self.args, 1)
            texts = [self.eng.decode(h.tokens) for h in greedy]
            scores = evaluate.corpus_scores(texts, self.references)
            if logs is not None:
                logs["val_bleu"], logs["val_chrf"] = scores["bleu"], scores["chrf"]
            self.seconds += time.perf_counter() - start

        return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def print_metrics(history: dict[str, list[float]]) -> keras.callbacks.Callback:
    """After each epoch, the logs as name=value lines for Katib, and into `history`."""
    import keras

    def on_epoch_end(epoch: int, logs: dict | None = None) -> None:
        if progress_bar():
            print(flush=True)  # the progress bar has not ended its line yet
        values = {k: float(v) for k, v in (logs or {}).items()}
        for name, value in values.items():
            history.setdefault(name, []).append(value)
        report({"epoch": epoch + 1, **values})

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def build_vocabularies(split: data.Split, size: int) -> tuple[Vocab, Vocab]:
    """Spanish and English pieces learnt from the training pairs only."""
    from nmt_translation.vocab import Vocab

    spa = Vocab.build([s for s, _ in split.train], size)
    eng = Vocab.build([e for _, e in split.train], size)
    return spa, eng


def test_metrics(model, split: data.Split, spa: Vocab, eng: Vocab, args) -> dict:
    """Greedy and beam translations of the test sources, scored, with the copy baseline."""
    from nmt_translation import evaluate, translate

    sources, references = list(split.test), list(split.test.values())
    greedy, beams = translations(model, sources, spa, eng, args, translate.BEAM_SIZE)
    # beam_search's keep_greedy, done here so the number of sentences where it mattered shows.
    chosen = translate.best_of(beams, greedy)
    greedy_text = [eng.decode(h.tokens) for h in greedy]
    beam_text = [eng.decode(h.tokens) for h in chosen]
    greedy_scores = evaluate.corpus_scores(greedy_text, references)
    beam_scores = evaluate.corpus_scores(beam_text, references)
    copy_scores = evaluate.corpus_scores(evaluate.copy_baseline(sources), references)
    low, high = evaluate.bootstrap_interval(beam_text, references, "bleu", seed=args.seed)
    return {
        "test_bleu": beam_scores["bleu"],
        "test_chrf": beam_scores["chrf"],
        "test_bleu_low": low,
        "test_bleu_high": high,
        "test_bleu_greedy": greedy_scores["bleu"],
        "test_chrf_greedy": greedy_scores["chrf"],
        "copy_bleu": copy_scores["bleu"],
        "copy_chrf": copy_scores["chrf"],
        "test_beam_kept_greedy": float(sum(c is g for c, g in zip(chosen, greedy, strict=True))),
        "test_beam_differs": float(
            sum(b.tokens != g.tokens for b, g in zip(chosen, greedy, strict=True))
        ),
        "test_sources": float(len(sources)),
        "bleu_signature": beam_scores["bleu_signature"],
        "chrf_signature": beam_scores["chrf_signature"],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        pairs = data.load_chosen(args)
        split = data.split_by_source(pairs, SPLIT_SEED)
    except (OSError, ValueError, data.DownloadError) as err:  # unreachable, corrupt, too small
        fail(f"{err} (check --data-file, --data-dir and --url, or use the committed --sample)")
    valid_pairs = [(s, ref) for s, refs in split.valid.items() for ref in refs]
    print(
        f"train={len(split.train)} pairs, valid={len(split.valid)} and test={len(split.test)}"
        " Spanish sources (each with all its translations)",
        flush=True,
    )

    import keras

    from nmt_translation import model as nmt_model

    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow in one call
    spa, eng = build_vocabularies(split, args.vocab_size)
    print(f"vocabulary: spa={spa.size} eng={eng.size} pieces", flush=True)
    if args.model == "attention":
        overrides = {"units": args.units}
        if args.dropout is not None:
            overrides["dropout"] = args.dropout
        config = nmt_model.Config.attention(spa.size, eng.size, **overrides)
        learning_rate = args.learning_rate or nmt_model.ATTENTION_DEFAULTS["learning_rate"]
        warmup = 0
    else:
        hp = nmt_model.HPARAMS_SETS[args.hparams_set]
        overrides = {} if args.dropout is None else {"dropout": args.dropout}
        config = nmt_model.Config.transformer(spa.size, eng.size, args.hparams_set, **overrides)
        learning_rate = args.learning_rate or hp["learning_rate"]
        warmup = args.warmup_steps or hp["warmup_steps"]
    model = nmt_model.build(config)
    model.compile(
        optimizer=nmt_model.optimizer(config, learning_rate, warmup),
        loss=nmt_model.MaskedCrossEntropy(config.label_smoothing),
        jit_compile=False,  # batch shapes vary; XLA would compile each anew
    )
    print(f"model={args.model} parameters={model.count_params()}", flush=True)
    train = nmt_model.Batches(
        *encode(split.train, spa, eng), args.batch_size, eng.start_id, eng.end_id, seed=args.seed
    )
    valid = nmt_model.Batches(
        *encode(valid_pairs, spa, eng), args.batch_size, eng.start_id, eng.end_id
    )
    validation = ValidationBleu(split.valid, spa, eng, args)
    history: dict[str, list[float]] = {}
    start = time.perf_counter()
    model.fit(
        train,
        validation_data=valid,
        epochs=args.epochs,
        callbacks=[validation.callback(model), print_metrics(history)],
        verbose=1 if progress_bar() else 0,
    )
    train_seconds = time.perf_counter() - start - validation.seconds

    args.model_dir.mkdir(parents=True, exist_ok=True)
    nmt_model.save(model, args.model_dir)
    spa.save(args.model_dir / "spa.json")
    eng.save(args.model_dir / "eng.json")
    print(f"wrote {args.model} model and vocabularies to {args.model_dir}", flush=True)

    print("translating the test sources, greedy and beam 4 ...", flush=True)
    start = time.perf_counter()
    tests = test_metrics(model, split, spa, eng, args)
    metrics = {name: values[-1] for name, values in history.items()}
    metrics |= {k: v for k, v in tests.items() if not k.endswith("_signature")}
    metrics |= {
        "train_seconds": train_seconds,
        "train_tokens_per_second": train.tokens() * args.epochs / train_seconds,
        "test_decode_seconds": time.perf_counter() - start,
        "validation_decode_seconds": validation.seconds,
    }
    signatures = {k: v for k, v in tests.items() if k.endswith("_signature")}
    (args.model_dir / "metrics.json").write_text(json.dumps(metrics | signatures, indent=2) + "\n")
    (args.model_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    print(f"sacrebleu: BLEU {signatures['bleu_signature']}", flush=True)
    print(f"sacrebleu: chrF {signatures['chrf_signature']}", flush=True)
    report({name: metrics[name] for name in FINAL_LINES})
    return metrics | signatures


if __name__ == "__main__":
    main()
