"""safety-rlhf: PPO safety fine-tuning of chat models on the Hugging Face stack."""

__version__ = "0.1.0"


class SafetyRLHFError(Exception):
    """An error the user can act on. The CLI prints it as one line and exits with status 2.

    The message names the offending value and the fix, e.g.
    ``prompts.jsonl line 7: missing column 'label' (found: prompt, category); add it or pass --dataset_mapping``.
    `exit_code` is the CLI's exit status for it.
    """

    exit_code = 2
