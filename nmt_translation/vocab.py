"""Subword vocabularies, one per language, built from the training text only.

Byte-pair encoding (Hugging Face `tokenizers`) with SentencePiece's word-start mark `▁`, rather
than WordPiece, for three reasons:

- it is reproducible: the same text gives the same pieces and ids in every process, which two
  training nodes that each build their vocabulary, and a rerun with the same seed, rely on.
  tokenizers' WordPiece trainer is not (huggingface/tokenizers#1794, open: its `##` pieces get
  ids in hash-map order, which breaks ties between equally frequent merges differently from run
  to run; a test here builds twice and compares);
- the text it sees is already cleaned by `nmt_translation.data.preprocess` (lower case a-z, the
  punctuation `. ? ! , ¿`, single spaces), so marking each word's start with `▁` and turning the
  marks back into spaces inverts it exactly: `decode(encode(text)) == text` for any cleaned text;
- like Tensor2Tensor's `SubwordTextEncoder`, which marks word ends with `_`, a piece knows
  whether it starts a word ("▁cans", "ado"), so words re-form without a separate rule.

Every letter and mark of the cleaned alphabet is in the vocabulary, so a cleaned word never
becomes `[UNK]`: a word unseen in training is spelt from smaller pieces. The ids: `[PAD]`=0 (the
models mask on it), `[START]`=1, `[END]`=2, `[UNK]`=3, then the learnt pieces. `encode` returns
the pieces' ids only; the models add `start_id` and `end_id` around them.

A vocabulary is one JSON file (the tokenizer's own format), spa.json and eng.json beside the
model, so the server and the trainers load the same one.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, START, END, UNK = "[PAD]", "[START]", "[END]", "[UNK]"
SPECIAL = [PAD, START, END, UNK]  # in id order: PAD=0, START=1, END=2, UNK=3
WORD_START = "\u2581"  # ▁, SentencePiece's mark, which cleaned text never contains
# What nmt_translation.data.preprocess keeps: a-z and five punctuation marks.
ALPHABET = list(string.ascii_lowercase) + list(".?!,¿")


class VocabError(ValueError):
    """A vocabulary file that is not one this module wrote."""


class Vocab:
    """A BPE tokenizer over cleaned text with fixed special ids (see the module)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        ids = [tokenizer.token_to_id(token) for token in SPECIAL]
        if ids != list(range(len(SPECIAL))):
            raise VocabError(f"special tokens {SPECIAL} must have ids 0-3, found {ids}")
        self.tokenizer = tokenizer
        self.pad_id, self.start_id, self.end_id, self.unk_id = ids

    @classmethod
    def build(cls, texts: Iterable[str], size: int) -> Vocab:
        """Learn `size` pieces (specials and alphabet included) from cleaned `texts`.

        Give it the training split's text only: a word seen only in validation or test must not
        become a piece of its own, or the scores on them would flatter the model.
        """
        if size < len(SPECIAL) + len(ALPHABET) + 1:
            raise ValueError(f"a vocabulary needs room for the alphabet: size >= 36, got {size}")
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(WORD_START, prepend_scheme="always")
        tokenizer.decoder = decoders.Metaspace(WORD_START, prepend_scheme="always")
        trainer = trainers.BpeTrainer(
            vocab_size=size,
            special_tokens=SPECIAL,
            initial_alphabet=[*ALPHABET, WORD_START],
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer)

    @property
    def size(self) -> int:
        """How many ids there are: the models' embedding and output sizes."""
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """The ids of a cleaned sentence's pieces, without START and END."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """The cleaned text of ids; PAD, START and END are left out, UNK shows as [UNK]."""
        skip = {self.pad_id, self.start_id, self.end_id}
        return self.tokenizer.decode(
            [int(i) for i in ids if int(i) not in skip], skip_special_tokens=False
        )

    def tokens(self, text: str) -> list[str]:
        """The pieces of a cleaned sentence, as strings (for plots and tests)."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def save(self, path: Path | str) -> Path:
        """Write the vocabulary as one JSON file (spa.json, eng.json)."""
        path = Path(path)
        path.write_text(self.tokenizer.to_str(pretty=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path | str) -> Vocab:
        """Read a vocabulary written by `save`."""
        path = Path(path)
        try:
            tokenizer = Tokenizer.from_str(path.read_text(encoding="utf-8"))
        except Exception as err:  # missing, not UTF-8, or not JSON: tokenizers raises Exception
            raise VocabError(f"{path}: not a vocabulary file ({err})") from err
        try:
            return cls(tokenizer)
        except VocabError as err:
            raise VocabError(f"{path}: {err}") from err
