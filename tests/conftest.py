import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny Qwen2 policy (hidden 64, 2 layers, vocab ~512) and BERT classifier, built once per session."""
    from safety_rlhf.tiny import TinyArguments, build_tiny_models

    out = tmp_path_factory.mktemp("tiny")
    return build_tiny_models(
        TinyArguments(
            output_dir=str(out), hidden_size=64, num_hidden_layers=2, vocab_size=512, classifier_hidden_size=32, seed=0
        )
    )
