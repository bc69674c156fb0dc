"""Each speed change measured alone on the benchmark's models: one JSON line of median seconds per variant.

    .venv/bin/python benchmarks/ablations.py            # after benchmarks/ppo_throughput.py has built the models

    lm_head          one micro-batch forward + backward of the policy, logits for the response positions only
                     (`logits_to_keep`) vs for every position
    entropy          the same with the entropy bonus off: entropy computed without a graph vs inside the graph
    adamw            one AdamW step over policy + critic parameters, fused vs the per-parameter loop
The rollout change (old log-probs read while sampling) is measured by the whole benchmark:
`ppo_throughput.py --recompute_logprobs` against `ppo_throughput.py` (`seconds_forward`).
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_common  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = bench_common.parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = bench_common.finish_args(parser.parse_args(argv))
    if not bench_common.models_exist(args.models_dir, 1):
        sys.exit(f"no models in {args.models_dir}; run benchmarks/ppo_throughput.py with the same flags first")
    from transformers import AutoModel, AutoModelForCausalLM

    from safety_rlhf import rollout
    from safety_rlhf.models import ValueModel

    torch.manual_seed(args.seed)
    path = Path(args.models_dir) / "policy"
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).train()
    backbone = AutoModel.from_pretrained(path, dtype=torch.float32).train()
    value = ValueModel(backbone, backbone.config.hidden_size)
    micro, prompt, response = args.per_device_train_batch_size, args.prompt_length, args.response_length
    ids = torch.randint(3, policy.config.vocab_size, (micro, prompt + response))
    mask = torch.ones_like(ids)
    positions = rollout.position_ids_from(mask)

    def policy_step(keep: bool, entropy_grad: bool):
        def run():
            logits = rollout.response_logits(policy, ids, mask, positions, response, keep=keep)
            logprobs, entropy = rollout.response_logprobs(
                logits, ids[:, prompt:], 0.7, with_entropy=True, entropy_grad=entropy_grad
            )
            (logprobs.mean() - 0.0 * entropy.mean()).backward()
            policy.zero_grad(set_to_none=True)

        return run

    params = [p for p in (*policy.parameters(), *value.parameters())]
    for p in params:
        p.grad = torch.randn_like(p)

    def adamw(fused: bool):
        optimizer = torch.optim.AdamW(params, lr=1e-6, fused=fused)
        optimizer.step()  # creates the state
        return optimizer.step

    r = args.repeats
    result = {
        "lm_head_response_only_s": median_seconds(policy_step(True, False), r),
        "lm_head_every_position_s": median_seconds(policy_step(False, False), r),
        "entropy_in_graph_s": median_seconds(policy_step(True, True), r),
        "adamw_fused_s": median_seconds(adamw(True), r),
        "adamw_loop_s": median_seconds(adamw(False), r),
        "micro_batch": micro,
        "tokens": prompt + response,
        "trainable_params_millions": round(sum(p.numel() for p in params) / 1e6, 2),
        "torch_threads": torch.get_num_threads(),
    }
    result = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
