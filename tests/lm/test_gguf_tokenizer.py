"""The conversion refuses a GGUF tokenizer rebuilt at character level (transformers 5.17 does this
for gemma-3): a policy scored through one trains to nothing, silently."""

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from llmrl.lm.base import LMError
from llmrl.lm.gguf import check_tokenizer


def character_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, **{c: i + 1 for i, c in enumerate(sorted(set("abcdefghijklmnopqrstuvwxyzPT ,.")))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_character_level_tokenizer_is_refused_with_the_fix():
    with pytest.raises(LMError, match=r"character-level tokenizer from m\.gguf.*Upgrade transformers"):
        check_tokenizer(character_tokenizer(), "m.gguf")


def test_the_shipped_models_tokenizers_pass(gemma_fp32, smollm2_fp32):
    for lm in (gemma_fp32, smollm2_fp32):
        check_tokenizer(lm.tokenizer, "shipped")
