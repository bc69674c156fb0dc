"""Safety reward model, refusal detector and cost model."""
