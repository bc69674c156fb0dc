"""`safety-rlhf sft`: supervised warm start of the policy with TRL's `SFTTrainer`.

    safety-rlhf sft --config recipes/tiny/sft.yaml

Rows are conversations (`messages`: one user turn, one assistant turn). They are split into a conversational
prompt/completion pair so the loss covers only what the assistant says, EOS included. `--own_answers FILE` (a
`safety-rlhf sample` file of the starting model) adds the model's own answers to the benign train prompts.
"""

from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM
from trl import SFTConfig, SFTTrainer, get_peft_config

from . import SafetyRLHFError, data
from .config import ScriptArguments, check_output_dir, check_training_fields, move_previous_checkpoints, save_config
from .models import check_fits, load_policy, load_tokenizer, lora_on_top_layers, weights_kwargs
from .precision import note_bf16_request
from .precision import resolve as resolve_precision

MERGED_DIR = "merged"


class SafetySFTTrainer(SFTTrainer):
    """TRL's `SFTTrainer` whose loss, in a single CPU process, projects only the labelled positions through the LM head.

    TRL 1.16's fused LM head scores only the positions that carry a label on Triton devices (CUDA, XPU); elsewhere it
    scores every position, prompt and padding included, in fp32 vocabulary tiles. A warm-start row of SmolLM2 is about
    half prompt, and its 49,152-word head in fp32 tiles took about 40% of a profiled step on a 2-core Intel Xeon of
    ours (docs/EXPERIMENTS.md, 2026-12-07). Here the backbone runs as usual, the labelled positions' hidden states go
    through the head in one matmul (bf16 under bf16 autocast: one rounding of the logits, not one per tile), and the
    log-softmax runs in fp32: the same loss, `entropy` and `mean_token_accuracy` as TRL's, at a fraction of the cost.
    Everywhere else (GPUs, several processes, DFT, label smoothing, a custom `compute_loss_func`, MoE auxiliary
    losses, pre-shifted labels) TRL's own loss runs.
    """

    def _labelled_head_applies(self, inputs: dict) -> bool:
        return (
            self.accelerator.device.type == "cpu"
            and self.accelerator.num_processes == 1
            and self.args.loss_type == "nll"
            and self.compute_loss_func is None
            and self.label_smoother is None
            and not self.aux_loss_enabled
            and "labels" in inputs
            and "shift_labels" not in inputs
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not self._labelled_head_applies(inputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        import torch
        from peft import PeftModel

        mode = "train" if self.model.training else "eval"
        causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
        backbone_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = causal_lm.base_model(**backbone_inputs, use_cache=False).last_hidden_state[:, :-1]
        labels = inputs["labels"][:, 1:]
        mask = labels != -100
        targets = labels[mask]
        logits = causal_lm.get_output_embeddings()(hidden[mask]).float()
        log_probs = torch.log_softmax(logits, dim=-1)
        chosen = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        labelled = mask.sum()
        count = labelled if num_items_in_batch is None else num_items_in_batch
        loss = -chosen.sum() / torch.as_tensor(count).clamp(min=1)
        with torch.no_grad():
            valid = max(int(labelled), 1)  # a batch without labels logs 0 for both, as TRL's loss does
            entropy = -(log_probs.exp() * log_probs).sum().item() / valid
            accuracy = (logits.argmax(-1) == targets).sum().item() / valid
        # the metrics TRL's own loss logs, under the names its `log` reads
        self._metrics[mode]["entropy"].append(entropy)
        self._metrics[mode]["mean_token_accuracy"].append(accuracy)
        if mode == "train":
            seen = inputs["attention_mask"].sum() if "attention_mask" in inputs else inputs["input_ids"].numel()
            self._total_train_tokens += int(seen)
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss


@dataclass
class SafetySFTConfig(SFTConfig):
    """TRL's `SFTConfig` plus `merge_lora`.

    Parameters:
        merge_lora (`bool`, *optional*, defaults to `False`):
            With LoRA (`use_peft`), also write the base with the trained adapter merged in to `output_dir/merged`: a
            full model that PPO can start from, whose LoRA-off reference is then this SFT policy (an adapter saved
            by PPO on top of it loads alone, which one stacked on an SFT adapter would not). Needs an unquantized
            base.
        own_answers (`str` or `None`, *optional*, defaults to `None`):
            A `safety-rlhf sample` file of the starting model's own responses: its answers to the benign prompts of
            the train split (those the refusal judge calls compliance) join the training rows (`own_answer_rows`).
            A warm start made only of refusals spills over onto benign prompts that look alarming; training on the
            model's own benign answers holds them where they were, in the model's own words rather than ours.
        trainable_layers (`int` or `None`, *optional*, defaults to `None`):
            = K, LoRA on the top K decoder layers only (PEFT `layers_to_transform`), as `ppo --trainable_layers`:
            the backward pass stops at layer L-K. None adapts every layer.
    """

    merge_lora: bool = field(
        default=False, metadata={"help": "With LoRA, also write the merged model to output_dir/merged (PPO's start)."}
    )
    own_answers: str | None = field(
        default=None,
        metadata={"help": "`safety-rlhf sample` file of the starting model: its benign train answers join the rows."},
    )

    trainable_layers: int | None = field(
        default=None, metadata={"help": "LoRA on the top K decoder layers only; None = all layers."}
    )

    def __post_init__(self):
        note_bf16_request(self)  # before TRL turns an unset bf16 into True
        check_training_fields(self)  # before TrainingArguments' own checks, which would fail later or not at all
        if self.trainable_layers is not None and self.trainable_layers < 1:
            raise SafetyRLHFError(
                f"trainable_layers={self.trainable_layers} must be at least 1; unset it to adapt every layer"
            )
        super().__post_init__()


def to_prompt_completion(row: dict) -> dict:
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def own_answer_rows(responses: list[dict], split: str) -> list[dict]:
    """The model's own answers to the benign prompts of `split`: `{prompt, answer, stopped}` rows.

    One answer per prompt: its first response the judge calls compliance, greedy before sampled. Harmful prompts
    never contribute, nor empty answers.
    """
    rows, seen = [], set()
    for row in sorted(responses, key=lambda r: r["decoding"] != "greedy"):
        if row["split"] != split or row["label"] != "benign" or row["refusal"] != "compliance":
            continue
        if row["prompt"] in seen or not row["response"].strip():
            continue
        seen.add(row["prompt"])
        rows.append({"prompt": row["prompt"], "answer": row["response"], "stopped": bool(row["stopped"])})
    return rows


def tokenize_with_own_answers(dataset: Dataset, own: list[dict], tokenizer) -> Dataset:
    """`dataset`'s conversations and the model's own answers as `input_ids` / `labels` (-100 on the prompt).

    Tokenized here rather than by `SFTTrainer` because an own answer that ran out of tokens (`stopped` false) must be
    learned as it was written: without the end-of-turn the chat template would add, so the warm start does not learn
    to end answers where the sampling budget cut them. Every other row is the chat template's prompt/completion, as
    `SFTTrainer` builds it.
    """

    def ids(messages: list[dict], generation_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(messages: list[dict], stopped: bool = True) -> dict:
        prompt = ids(messages[:-1], True)
        if stopped:
            full = ids(messages, False)
            if full[: len(prompt)] != prompt:
                raise SafetyRLHFError("the chat template renders the prompt differently inside the conversation")
        else:
            full = prompt + tokenizer(messages[-1]["content"], add_special_tokens=False)["input_ids"]
        return {"input_ids": full, "labels": [-100] * len(prompt) + full[len(prompt) :]}

    rows = [encode(row["messages"]) for row in dataset]
    for row in own:
        messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["answer"]}]
        rows.append(encode(messages, row["stopped"]))
    return Dataset.from_list(rows)


def read_own_answers(path: str, split: str, option: str) -> list[dict]:
    """`own_answer_rows` of the `safety-rlhf sample` file `path` (passed as `option`); a file without one benign
    answer of `split` is an error, not a silent no-op."""
    own = own_answer_rows(data.read_responses(path, option), split)
    if not own:
        raise SafetyRLHFError(
            f"{option}={path!r} holds no benign answer for split {split!r}; sample the starting model on that split "
            f"(`safety-rlhf sample --splits {split}`)"
        )
    return own


def supervised_rows(dataset_name: str, split: str, tokenizer, own_answers: str | None = None,
                    option: str = "ptx_own_answers") -> Dataset:  # fmt: skip
    """The conversations of `dataset_name` (an `sft` dataset) and, with `own_answers`, the model's own benign answers
    of `split`, tokenized as the warm start learns them (`input_ids`, `labels` with -100 on the prompt): the rows of
    PPO's supervised ptx term."""
    dataset = data.load_sft(dataset_name, split=split)
    own = read_own_answers(own_answers, split, option) if own_answers else []
    return tokenize_with_own_answers(dataset, own, tokenizer)


def load_split(script_args: ScriptArguments, split: str, own_answers: str | None = None, tokenizer=None):
    dataset = data.load_sft(
        script_args.dataset_name,
        split=split,
        **data.source_options(script_args),
    )
    if own_answers:
        return tokenize_with_own_answers(dataset, read_own_answers(own_answers, split, "own_answers"), tokenizer)
    return dataset.map(to_prompt_completion, remove_columns=dataset.column_names)


def resolve_checkpoint(trainer: SFTTrainer, resume: str) -> str:
    """The checkpoint folder `resume` names (`latest`: the newest `checkpoint-N` of `output_dir`), checked before the
    run writes anything: it exists, its weights file is whole, and its tensors have the names and shapes of the
    model's (a full model, or under LoRA the adapter)."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors import SafetensorError, safe_open
    from transformers.trainer_utils import get_last_checkpoint

    output_dir = trainer.args.output_dir
    if resume == "latest":
        found = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if found is None:
            raise SafetyRLHFError(f"resume_from_checkpoint=latest but {output_dir} holds no checkpoint-N folder")
        resume = found
    path = Path(resume)
    lora = isinstance(trainer.model, PeftModel)
    weights = path / ("adapter_model.safetensors" if lora else "model.safetensors")
    if not (path / "trainer_state.json").is_file() or not weights.is_file():
        raise SafetyRLHFError(
            f"resume_from_checkpoint {path} holds no trainer_state.json and {weights.name}; pass a checkpoint-N folder "
            "this recipe wrote (with or without LoRA as now)"
        )
    try:
        with safe_open(str(weights), "pt") as f:
            saved = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except SafetensorError as err:
        raise SafetyRLHFError(
            f"checkpoint {weights} is truncated or damaged ({err}); resume from another one"
        ) from None
    ours = get_peft_model_state_dict(trainer.model) if lora else trainer.model.state_dict()
    ours = {name: tuple(value.shape) for name, value in ours.items()}
    unknown = sorted(saved.keys() - ours.keys())
    reshaped = sorted(name for name in saved.keys() & ours.keys() if saved[name] != ours[name])
    if unknown or reshaped or not saved:
        name = (reshaped or unknown or ["(none)"])[0]
        detail = f"{name} has shape {list(saved[name])} there, {list(ours[name])} here" if reshaped else f"{name}"
        raise SafetyRLHFError(
            f"checkpoint {path} was written for another model or LoRA setting ({detail}); resume with the recipe that "
            "wrote it, or start a new run in another --output_dir"
        )
    return str(path)


def merged_model(model, model_args, training_args, allow_pickle: bool = False):
    """The trained adapter merged into its base. A base trained in bf16 (`dtype: native`) and saved as fp32 is reloaded
    in fp32 for the merge, so the merged model keeps the checkpoint's precision plus the fp32 adapter's update (unless
    a PAD row was added to the embeddings at load time: then the bf16 model is merged as it is)."""
    import torch
    from peft import PeftModel

    saved = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    saved_dtype = getattr(saved, "dtype", None) or getattr(saved, "torch_dtype", None)
    loaded = next(model.get_base_model().parameters()).dtype
    if loaded == torch.float32 or str(saved_dtype).replace("torch.", "") != "float32":
        return model.merge_and_unload()
    base = AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path, revision=model_args.model_revision, dtype=torch.float32,
        trust_remote_code=training_args.trust_remote_code, **weights_kwargs(allow_pickle),
    )  # fmt: skip
    if base.get_input_embeddings().num_embeddings != model.get_input_embeddings().num_embeddings:
        return model.merge_and_unload()  # the PAD row added at load time exists only in the trained model
    fp32 = PeftModel.from_pretrained(base, training_args.output_dir)
    return fp32.merge_and_unload()


def main(script_args: ScriptArguments, training_args: SFTConfig, model_args) -> SFTTrainer:
    merge = getattr(training_args, "merge_lora", False)
    if merge and not model_args.use_peft:
        raise SafetyRLHFError("merge_lora is set but use_peft is not; pass --use_peft true or drop --merge_lora")
    if merge and (model_args.load_in_4bit or model_args.load_in_8bit):
        raise SafetyRLHFError(
            "merge_lora needs an unquantized base (the merged weights would be re-quantized); drop --load_in_4bit / "
            "--load_in_8bit or --merge_lora"
        )
    check_output_dir(training_args.output_dir, script_args.overwrite_output_dir, training_args.resume_from_checkpoint)
    resolve_precision(model_args, training_args, what="sft")
    # Everything that can fail on bad input runs before the first byte is written to output_dir.
    if training_args.max_length is not None:
        check_fits(
            model_args.model_name_or_path,
            "max_length",
            training_args.max_length,
            trust_remote_code=training_args.trust_remote_code,
        )
    tokenizer = load_tokenizer(model_args, training_args.trust_remote_code)
    own_answers = getattr(training_args, "own_answers", None)
    train_dataset = load_split(script_args, script_args.dataset_train_split, own_answers, tokenizer)
    eval_dataset = (
        load_split(script_args, script_args.dataset_test_split) if training_args.eval_strategy != "no" else None
    )
    model = load_policy(
        model_args,
        tokenizer,
        gradient_checkpointing=training_args.gradient_checkpointing,
        trust_remote_code=training_args.trust_remote_code,
        apply_peft=False,
        allow_pickle=script_args.allow_pickle_weights,
    )
    peft_config = get_peft_config(model_args)
    if getattr(training_args, "trainable_layers", None) is not None:
        peft_config = lora_on_top_layers(peft_config, model, training_args.trainable_layers)
    trainer = SafetySFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    resume = training_args.resume_from_checkpoint
    if resume:
        resume = resolve_checkpoint(trainer, resume)
    # Every check passed: only now does the run write into output_dir.
    if script_args.overwrite_output_dir and not resume:
        move_previous_checkpoints(training_args.output_dir)
    save_config(training_args.output_dir, script_args=script_args, training_args=training_args, model_args=model_args)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    tokenizer.save_pretrained(training_args.output_dir)
    if merge and trainer.accelerator.is_main_process:
        merged = Path(training_args.output_dir) / MERGED_DIR
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        merged_model(unwrapped, model_args, training_args, script_args.allow_pickle_weights).save_pretrained(merged)
        tokenizer.save_pretrained(merged)
    return trainer
