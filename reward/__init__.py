"""Safety reward model, refusal detector and cost model."""

from .model import SafetyCostModel, SafetyRewardModel
from .refusal import RefusalDetector, classify_refusal

__all__ = ["RefusalDetector", "SafetyCostModel", "SafetyRewardModel", "classify_refusal"]
