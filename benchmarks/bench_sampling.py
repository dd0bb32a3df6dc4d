"""Sampling n continuations of a prompt: HFLM.generate (the prompt read once, its KV cache copied
n times) vs transformers' own ``num_return_sequences`` (the prompt read n times), side by side.

    python benchmarks/bench_sampling.py                    # gemma-3-270m fp32, CALM proposer prompts
    python benchmarks/bench_sampling.py --n 4,12 --prompts 2

Prompts are CALM proposer prompts from generated TextWorld games (~350-650 tokens): the case where
the prompt dwarfs the ~10 sampled tokens. Both paths draw the same samples from the same seed
(checked here and in tests/lm/test_hf.py). Goal: >= 2x at n = 12.
"""

from __future__ import annotations

import argparse
import time

import torch

from llmrl.lm import load_model


def proposer_prompts(n: int) -> list[str]:
    from llmrl.envs import textworld as TW
    from llmrl.recipes.calm import few_shot_examples, walkthrough_pairs
    from llmrl.roles.action_proposer import proposer_prompt

    train, test = TW.make_games("easy", "train", 1), TW.make_games("easy", "test", n)
    examples = few_shot_examples(train)
    return [proposer_prompt(s, examples) for s, _ in walkthrough_pairs(test)[:n]]


def expand_in_generate(lm, prompt: str, n: int, max_new_tokens: int, seed: int) -> list[str]:
    ids = torch.tensor([lm._bos + lm.encode(prompt)])
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=True, temperature=0.7, top_p=0.9, top_k=0, num_return_sequences=n,
                                pad_token_id=lm.tokenizer.pad_token_id)  # fmt: skip
    return lm.tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--n", default="4,12,24")
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model, dtype=args.dtype)
    prompts = proposer_prompts(args.prompts)
    lengths = [len(lm.encode(p)) for p in prompts]
    print(f"{args.model} {args.dtype}, {len(prompts)} prompts of {min(lengths)}-{max(lengths)} tokens, "
          f"{args.max_new_tokens} new tokens, {args.threads} threads")
    lm.generate(prompts[:1], max_new_tokens=2, temperature=0.7, top_p=0.9, n=2, seed=0)  # warm-up
    print("| n | generate's expansion (s/prompt) | shared prefix (s/prompt) | speed-up | same samples |")
    print("|---:|---:|---:|---:|---|")
    for n in (int(x) for x in args.n.split(",")):
        t0 = time.perf_counter()
        theirs = [expand_in_generate(lm, p, n, args.max_new_tokens, seed=i) for i, p in enumerate(prompts)]
        t1 = time.perf_counter()
        ours = [lm.generate([p], max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.9, n=n, seed=i)[0].texts
                for i, p in enumerate(prompts)]  # fmt: skip
        t2 = time.perf_counter()
        same = all(list(a) == list(b) for a, b in zip(ours, theirs))
        a, b = (t1 - t0) / len(prompts), (t2 - t1) / len(prompts)
        print(f"| {n} | {a:.2f} | {b:.2f} | {a / b:.1f}× | {same} |", flush=True)


if __name__ == "__main__":
    main()
