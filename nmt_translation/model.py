"""The two translation models, their loss and learning rate, and one decoding API for both.

- `attention` (`AttentionTranslator`): the TensorFlow "Neural machine translation with attention"
  tutorial's model (tensorflow/text, docs/tutorials/nmt_with_attention.ipynb): token embeddings of
  `units` (256 there), a bidirectional GRU encoder whose two directions are summed, a GRU decoder
  whose output queries the encoder's sequence through attention, the attended vector added to the
  query and layer-normalised, then a Dense layer to logits. The decoder starts from a zero state,
  as there. One change, asked for by the issue: the tutorial now scores attention with a one-head
  dot product (`MultiHeadAttention`); we score it additively as Bahdanau et al. (2015) and the
  tutorial's earlier version did, v . tanh(W_q q + W_k k) (`AdditiveAttention`).
- `transformer` (`Transformer`): the encoder-decoder Transformer configured like Tensor2Tensor's
  hparams sets (`HPARAMS_SETS`; the values and where they come from are written there).

Both take token ids padded with 0 (`PAD_ID`) and give logits of the next target token:
`model((source, target_in))` -> (batch, target_len, target_vocab). For decoding
(nmt_translation/translate.py) both offer the same incremental API:

    encoded = model.encode(source)              # a dict of tensors, batch first
    state = model.initial_state(encoded)        # a list of tensors, batch first
    logits, state, attention = model.step(encoded, state, tokens)   # tokens (batch,) int

`attention` is (batch, source_len): the attention weights over the source for that step (the
additive attention's; the Transformer's last layer's, averaged over heads), for heat-maps. Every
tensor in `encoded` and `state` has the batch first, so beam search repeats and reorders them
with one `take` each.

A model is saved as config.json (what `build` needs) and model.weights.h5 (`save`, `load`).
Keras (and TensorFlow) are imported only by this module: 9 s, which train.py spends only after
its flags are checked.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

MODELS = ("attention", "transformer")
# The first decoding step attends over one position, which Keras warns is a softmax over one
# value; that is exactly what it should be.
warnings.filterwarnings("ignore", message="You are using a softmax over axis", category=UserWarning)
PAD_ID = 0  # nmt_translation.vocab: [PAD]=0, [START]=1, [END]=2
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.weights.h5"

# Tensor2Tensor's hparams (tensorflow/tensor2tensor, tensor2tensor/models/transformer.py at its
# last commit bafdc1b, 2023-04-01): transformer_base() = transformer_base_v3() =
# transformer_base_v2() over transformer_base_v1():
#   v1: hidden_size 512, num_hidden_layers 6, num_heads 8, filter_size 2048, label_smoothing 0.1,
#       shared_embedding_and_softmax_weights True, optimizer_adam_beta1 0.9,
#       optimizer_adam_epsilon 1e-9, max_length 256, batch_size 4096 (tokens, not sentences)
#   v2: layer_preprocess_sequence "n", layer_postprocess_sequence "da" (layer norm before each
#       sublayer, dropout and residual after), layer_prepostprocess_dropout 0.1,
#       attention_dropout 0.1, relu_dropout 0.1, learning_rate_warmup_steps 8000
#   v3: optimizer_adam_beta2 0.997, learning_rate_schedule
#       "constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size", learning_rate_constant 2.0
# transformer_tiny(): transformer_base with num_hidden_layers 2, hidden_size 128, filter_size 512,
# num_heads 4. The schedule's factors (tensor2tensor/utils/learning_rate.py):
#   constant * min(1, step / warmup) * rsqrt(max(step, warmup)) * hidden_size ** -0.5.
# Our one `dropout` stands for all three T2T dropouts; our batch size counts sentences.
HPARAMS_SETS = {
    "transformer_base": {
        "num_layers": 6,
        "d_model": 512,
        "num_heads": 8,
        "filter_size": 2048,
        "dropout": 0.1,
        "label_smoothing": 0.1,
        "warmup_steps": 8000,
        "learning_rate": 2.0,  # T2T's learning_rate_constant
        "adam_beta1": 0.9,
        "adam_beta2": 0.997,
        "adam_epsilon": 1e-9,
    },
}
HPARAMS_SETS["transformer_tiny"] = HPARAMS_SETS["transformer_base"] | {
    "num_layers": 2,
    "d_model": 128,
    "num_heads": 4,
    "filter_size": 512,
}
# The tutorial's model: UNITS = 256, Adam with Keras' defaults (learning rate 0.001), plain
# cross-entropy, no dropout.
ATTENTION_DEFAULTS = {"units": 256, "dropout": 0.0, "label_smoothing": 0.0, "learning_rate": 1e-3}


@dataclass(frozen=True)
class Config:
    """Everything `build` needs; written beside the weights as config.json."""

    model: str
    source_vocab_size: int
    target_vocab_size: int
    dropout: float
    label_smoothing: float
    units: int = 256  # attention
    hparams_set: str = ""  # transformer: the rest come from HPARAMS_SETS[hparams_set]
    num_layers: int = 0
    d_model: int = 0
    num_heads: int = 0
    filter_size: int = 0

    @classmethod
    def attention(cls, source_vocab_size: int, target_vocab_size: int, **overrides) -> Config:
        values = {k: v for k, v in ATTENTION_DEFAULTS.items() if k != "learning_rate"}
        return cls("attention", source_vocab_size, target_vocab_size, **(values | overrides))

    @classmethod
    def transformer(
        cls, source_vocab_size: int, target_vocab_size: int, hparams_set: str, **overrides
    ) -> Config:
        shape = ("num_layers", "d_model", "num_heads", "filter_size", "dropout", "label_smoothing")
        values = {k: HPARAMS_SETS[hparams_set][k] for k in shape}
        return cls(
            "transformer",
            source_vocab_size,
            target_vocab_size,
            hparams_set=hparams_set,
            **(values | overrides),
        )


def build(config: Config) -> keras.Model:
    """The model a config describes, with its weights made (by a call on a dummy batch)."""
    if config.model == "attention":
        model = AttentionTranslator(config)
    elif config.model == "transformer":
        model = Transformer(config)
    else:
        raise ValueError(f"unknown model {config.model!r}, expected one of {MODELS}")
    dummy = np.ones((1, 2), dtype="int32")
    model((dummy, dummy))
    return model


def save(model: keras.Model, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(model.config), indent=2) + "\n")
    model.save_weights(folder / WEIGHTS_FILE)


def load(folder: Path) -> keras.Model:
    config = Config(**json.loads((Path(folder) / CONFIG_FILE).read_text()))
    model = build(config)
    model.load_weights(Path(folder) / WEIGHTS_FILE)
    return model


# -- the loss and the learning rate ---------------------------------------------------------


class MaskedCrossEntropy(keras.losses.Loss):
    """Cross-entropy per target token, padding left out, with T2T's label smoothing.

    With smoothing e over V classes the target puts 1 - e on the true token and e / (V - 1) on
    each other, and the loss is the cross-entropy to that target minus the target's own entropy
    (T2T's `smoothing_cross_entropy` subtracts this "normalizing constant"): a KL divergence,
    0 when the model predicts the smoothed target exactly. With e = 0 it is plain cross-entropy.
    The mean is over real tokens of the batch, as the tutorial's `masked_loss`.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "masked_cross_entropy"):
        super().__init__(name=name)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        vocab = y_pred.shape[-1]
        labels = ops.cast(y_true, "int32")
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        e = self.label_smoothing
        if e > 0:
            confidence, low = 1.0 - e, e / (vocab - 1)
            target = ops.one_hot(labels, vocab) * (confidence - low) + low
            entropy = -(confidence * math.log(confidence) + (vocab - 1) * low * math.log(low))
            per_token = -ops.sum(target * log_probs, axis=-1) - entropy
        else:
            per_token = -ops.squeeze(ops.take_along_axis(log_probs, labels[..., None], -1), -1)
        mask = ops.cast(ops.not_equal(labels, PAD_ID), "float32")
        return ops.sum(per_token * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self) -> dict:
        return {"label_smoothing": self.label_smoothing, "name": self.name}


def t2t_learning_rate(step: float, constant: float, d_model: int, warmup_steps: int) -> float:
    """T2T's constant*linear_warmup*rsqrt_decay*rsqrt_hidden_size at a (1-based) step."""
    return (
        constant
        * min(1.0, step / warmup_steps)
        / math.sqrt(max(step, warmup_steps))
        / math.sqrt(d_model)
    )


class InverseSqrtSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`t2t_learning_rate` for Keras: linear warm-up to a peak at `warmup_steps`, then 1/sqrt."""

    def __init__(self, constant: float, d_model: int, warmup_steps: int):
        self.constant, self.d_model, self.warmup_steps = constant, d_model, warmup_steps

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0  # Keras counts steps from 0, T2T's step 1 is ours 0
        warmup = float(self.warmup_steps)
        return (
            self.constant
            * ops.minimum(1.0, step / warmup)
            * ops.rsqrt(ops.maximum(step, warmup))
            / math.sqrt(self.d_model)
        )

    def get_config(self) -> dict:
        return {
            "constant": self.constant,
            "d_model": self.d_model,
            "warmup_steps": self.warmup_steps,
        }


def optimizer(config: Config, learning_rate: float, warmup_steps: int) -> keras.optimizers.Adam:
    """Adam as the tutorial (attention) or T2T's transformer_base (schedule and moments)."""
    if config.model == "attention":
        return keras.optimizers.Adam(learning_rate)
    hp = HPARAMS_SETS[config.hparams_set]
    schedule = InverseSqrtSchedule(learning_rate, config.d_model, warmup_steps)
    return keras.optimizers.Adam(
        schedule, beta_1=hp["adam_beta1"], beta_2=hp["adam_beta2"], epsilon=hp["adam_epsilon"]
    )


def padding_mask(ids) -> object:
    """True at real tokens, False at padding: (batch, length) bool."""
    return ops.not_equal(ids, PAD_ID)


def causal_mask(length: int) -> object:
    """(length, length) bool: position i may attend to positions 0..i."""
    return ops.tril(ops.ones((length, length), dtype="bool"))


# -- the attention model (the TensorFlow tutorial's) -------------------------------------------


class AdditiveAttention(layers.Layer):
    """Bahdanau's score v . tanh(W_q q + W_k k), softmax over the real source positions."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.query_dense = layers.Dense(units, use_bias=False, name="w_query")
        self.key_dense = layers.Dense(units, name="w_key")
        self.score_dense = layers.Dense(1, use_bias=False, name="v")

    def call(self, query, keys, values, source_mask):
        """query (b, t, u), keys = key_dense(values) (b, s, a), values (b, s, u), source_mask (b, s)
        -> context (b, t, u), weights (b, t, s). Keys come projected, once per sentence."""
        hidden = ops.tanh(ops.expand_dims(self.query_dense(query), 2) + ops.expand_dims(keys, 1))
        scores = ops.squeeze(self.score_dense(hidden), -1)
        scores = ops.where(ops.expand_dims(source_mask, 1), scores, -1e9)
        weights = ops.softmax(scores, axis=-1)
        return ops.einsum("bts,bsu->btu", weights, values), weights


class AttentionTranslator(keras.Model):
    """Bidirectional GRU encoder, GRU decoder, additive attention (see the module)."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        units = config.units
        self.source_embedding = layers.Embedding(config.source_vocab_size, units)
        self.encoder_rnn = layers.Bidirectional(
            layers.GRU(units, return_sequences=True, recurrent_initializer="glorot_uniform"),
            merge_mode="sum",
        )
        self.target_embedding = layers.Embedding(config.target_vocab_size, units)
        self.decoder_rnn = layers.GRU(
            units, return_sequences=True, return_state=True, recurrent_initializer="glorot_uniform"
        )
        self.attention = AdditiveAttention(units)
        self.norm = layers.LayerNormalization()
        self.dropout = layers.Dropout(config.dropout)
        self.output_layer = layers.Dense(config.target_vocab_size)

    def encode(self, source, training: bool = False) -> dict:
        mask = padding_mask(source)
        x = self.dropout(self.source_embedding(source), training=training)
        memory = self.encoder_rnn(x, mask=mask, training=training)
        return {"memory": memory, "keys": self.attention.key_dense(memory), "mask": mask}

    def decode(self, encoded: dict, target_in, state=None, training: bool = False):
        """(logits (b, t, V), the GRU's last state (b, u), attention weights (b, t, s))."""
        x = self.dropout(self.target_embedding(target_in), training=training)
        x, state = self.decoder_rnn(x, initial_state=state, training=training)
        context, weights = self.attention(x, encoded["keys"], encoded["memory"], encoded["mask"])
        x = self.norm(x + self.dropout(context, training=training))
        return self.output_layer(x), state, weights

    def call(self, inputs, training: bool = False):
        source, target_in = inputs
        return self.decode(self.encode(source, training), target_in, training=training)[0]

    def attention_weights(self, source, target_in):
        """(b, t, s): where each target position looked in the source (the heat-map)."""
        return self.decode(self.encode(source), target_in)[2]

    def initial_state(self, encoded: dict) -> list:
        batch = ops.shape(encoded["memory"])[0]
        return [ops.zeros((batch, self.config.units))]  # the tutorial starts from zeros

    def step(self, encoded: dict, state: list, tokens):
        logits, h, weights = self.decode(encoded, ops.expand_dims(tokens, 1), state[0])
        return logits[:, 0], [h], weights[:, 0]


# -- the Transformer (Tensor2Tensor's transformer_base) -----------------------------------------


def timing_signal(length: int, depth: int) -> np.ndarray:
    """T2T's sinusoidal position signal (common_attention.get_timing_signal_1d): sines of
    geometric timescales from 1 to 1e4 in the first half of the channels, cosines in the second."""
    half = depth // 2
    increment = math.log(1e4) / max(half - 1, 1)
    inv_timescales = np.exp(np.arange(half) * -increment)
    scaled = np.arange(length)[:, None] * inv_timescales[None, :]
    signal = np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1)
    return np.pad(signal, [[0, 0], [0, depth % 2]]).astype("float32")


class FeedForward(layers.Layer):
    """T2T's dense_relu_dense, with relu_dropout between the two layers."""

    def __init__(self, d_model: int, filter_size: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.inner = layers.Dense(filter_size, activation="relu")
        self.dropout = layers.Dropout(dropout)
        self.outer = layers.Dense(d_model)

    def call(self, x, training: bool = False):
        return self.outer(self.dropout(self.inner(x), training=training))


def _attention(config: Config) -> layers.MultiHeadAttention:
    return layers.MultiHeadAttention(
        config.num_heads, config.d_model // config.num_heads, dropout=config.dropout
    )


class EncoderLayer(layers.Layer):
    """x + dropout(self_attention(norm(x))), then x + dropout(ffn(norm(x))): T2T's "n" / "da"."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.attention_norm, self.ffn_norm = (
            layers.LayerNormalization(),
            layers.LayerNormalization(),
        )
        self.attention = _attention(config)
        self.ffn = FeedForward(config.d_model, config.filter_size, config.dropout)
        self.dropout = layers.Dropout(config.dropout)

    def call(self, x, attention_mask, training: bool = False):
        h = self.attention_norm(x)
        h = self.attention(h, h, attention_mask=attention_mask, training=training)
        x = x + self.dropout(h, training=training)
        return x + self.dropout(self.ffn(self.ffn_norm(x), training=training), training=training)


class DecoderLayer(layers.Layer):
    """Causal self-attention, attention over the encoder, feed-forward; each pre-normalised."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.self_norm = layers.LayerNormalization()
        self.cross_norm = layers.LayerNormalization()
        self.ffn_norm = layers.LayerNormalization()
        self.self_attention = _attention(config)
        self.cross_attention = _attention(config)
        self.ffn = FeedForward(config.d_model, config.filter_size, config.dropout)
        self.dropout = layers.Dropout(config.dropout)

    def call(self, x, past, self_mask, memory, cross_mask, training: bool = False):
        """x (b, t, d): the new positions; past (b, p, d): the normalised inputs of the
        positions before them (p = 0 in training). Returns (output, past + these positions'
        normalised inputs, cross-attention weights (b, heads, t, s))."""
        h = self.self_norm(x)
        seen = ops.concatenate([past, h], axis=1)
        a = self.self_attention(h, seen, attention_mask=self_mask, training=training)
        x = x + self.dropout(a, training=training)
        c, weights = self.cross_attention(
            self.cross_norm(x),
            memory,
            attention_mask=cross_mask,
            return_attention_scores=True,
            training=training,
        )
        x = x + self.dropout(c, training=training)
        x = x + self.dropout(self.ffn(self.ffn_norm(x), training=training), training=training)
        return x, seen, weights


class Transformer(keras.Model):
    """Pre-norm encoder-decoder Transformer; the target embedding is also the softmax weights."""

    def __init__(self, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        d = config.d_model
        # T2T: embeddings drawn with stddev d ** -0.5 and multiplied by sqrt(d) on the way in.
        init = keras.initializers.RandomNormal(stddev=d**-0.5)
        self.source_embedding = layers.Embedding(config.source_vocab_size, d, embeddings_initializer=init)  # fmt: skip
        self.target_embedding = layers.Embedding(config.target_vocab_size, d, embeddings_initializer=init)  # fmt: skip
        self.encoder_layers = [EncoderLayer(config) for _ in range(config.num_layers)]
        self.decoder_layers = [DecoderLayer(config) for _ in range(config.num_layers)]
        self.encoder_norm, self.decoder_norm = (
            layers.LayerNormalization(),
            layers.LayerNormalization(),
        )
        self.dropout = layers.Dropout(config.dropout)
        self.max_positions = 1024
        self.positions = ops.convert_to_tensor(timing_signal(self.max_positions, d))

    def _embed(self, embedding, ids, start: int = 0, training: bool = False):
        length = ops.shape(ids)[1]
        x = embedding(ids) * math.sqrt(self.config.d_model)
        x = x + self.positions[start : start + length]
        return self.dropout(x, training=training)

    def encode(self, source, training: bool = False) -> dict:
        mask = padding_mask(source)
        keys = ops.expand_dims(mask, 1)  # (b, 1, s): any query may look at every real token
        x = self._embed(self.source_embedding, source, training=training)
        for layer in self.encoder_layers:
            x = layer(x, keys, training=training)
        return {"memory": self.encoder_norm(x), "mask": mask}

    def _logits(self, x):
        return ops.matmul(self.decoder_norm(x), ops.transpose(self.target_embedding.embeddings))

    def decode(self, encoded: dict, target_in, training: bool = False):
        """Teacher-forced: (logits (b, t, V), last layer's attention (b, t, s))."""
        length = ops.shape(target_in)[1]
        self_mask = ops.logical_and(
            ops.expand_dims(causal_mask(length), 0), ops.expand_dims(padding_mask(target_in), 1)
        )
        cross_mask = ops.expand_dims(encoded["mask"], 1)
        x = self._embed(self.target_embedding, target_in, training=training)
        batch = ops.shape(x)[0]
        empty = ops.zeros((batch, 0, self.config.d_model))
        for layer in self.decoder_layers:
            x, _, weights = layer(
                x, empty, self_mask, encoded["memory"], cross_mask, training=training
            )
        return self._logits(x), ops.mean(weights, axis=1)

    def call(self, inputs, training: bool = False):
        source, target_in = inputs
        return self.decode(self.encode(source, training), target_in, training)[0]

    def attention_weights(self, source, target_in):
        return self.decode(self.encode(source), target_in)[1]

    def initial_state(self, encoded: dict) -> list:
        """Per decoder layer, the normalised inputs of the positions decoded so far: none yet."""
        batch = ops.shape(encoded["memory"])[0]
        return [ops.zeros((batch, 0, self.config.d_model)) for _ in self.decoder_layers]

    def step(self, encoded: dict, state: list, tokens):
        """One position: its self-attention sees the cached positions and itself, so no mask
        is needed; the cost of a step grows with the prefix only through that attention."""
        position = ops.shape(state[0])[1]
        x = self._embed(self.target_embedding, ops.expand_dims(tokens, 1), start=position)
        cross_mask = ops.expand_dims(encoded["mask"], 1)
        new_state = []
        for layer, past in zip(self.decoder_layers, state, strict=True):
            x, seen, weights = layer(x, past, None, encoded["memory"], cross_mask)
            new_state.append(seen)
        return self._logits(x)[:, 0], new_state, ops.mean(weights, axis=1)[:, 0]


# -- batches for Model.fit ---------------------------------------------------------------------


class Batches(keras.utils.PyDataset):
    """((source, target_in), target_out) batches of id lists, padded to a multiple of 16.

    source: the sentence's ids and END; target_in: START and the translation's ids; target_out:
    the ids and END, which the loss reads. Rounding the padded length to a multiple of 16 keeps
    the shapes Keras' compiled step sees to a few. `seed` shuffles anew each epoch; None keeps
    the order (validation).
    """

    def __init__(
        self,
        sources: list[list[int]],
        targets: list[list[int]],
        batch_size: int,
        start_id: int,
        end_id: int,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sources, self.targets = sources, targets
        self.batch_size, self.start_id, self.end_id = batch_size, start_id, end_id
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.order = np.arange(len(sources))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.sources) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        source = _pad([self.sources[i] for i in rows])
        target_in = _pad([[self.start_id, *self.targets[i]] for i in rows])
        target_out = _pad([[*self.targets[i], self.end_id] for i in rows])
        return (source, target_in), target_out

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.order = self.rng.permutation(len(self.sources))

    def tokens(self) -> int:
        """Real tokens of one epoch, source and target (END included): for tokens per second."""
        return sum(len(s) for s in self.sources) + sum(len(t) + 1 for t in self.targets)


def _pad(sequences: list[list[int]], multiple: int = 16) -> np.ndarray:
    length = max(len(s) for s in sequences)
    out = np.full((len(sequences), -(-length // multiple) * multiple), PAD_ID, dtype="int32")
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = seq
    return out
