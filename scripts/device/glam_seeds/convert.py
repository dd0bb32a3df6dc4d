"""Device glue: transformers 5.17 (the GPU machine's) builds a character-level tokenizer from this
GGUF, so convert the weights there and take the tokenizer files of a 5.24 conversion."""
import lzma
import shutil
import sys
from pathlib import Path

import llmrl.lm.gguf as g


def convert(gguf_path, out):
    import torch
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    m.hf_quantizer = None
    if hasattr(m.config, "quantization_config"):
        del m.config.quantization_config
    m.save_pretrained(out, safe_serialization=True)
    here = Path(sys.argv[2])
    (out / "tokenizer.json").write_bytes(lzma.decompress((here / "tok.json.xz").read_bytes()))
    shutil.copy(here / "tok_config.json", out / "tokenizer_config.json")

g._convert = convert
d = g.ensure_converted(sys.argv[1])
from transformers import AutoTokenizer

print(d, AutoTokenizer.from_pretrained(str(d))(" turn left go forward", add_special_tokens=False)["input_ids"])
