"""Safety reward model, cost model, trained refusal judge and phrase-list refusal detector."""

from .model import SafetyCostModel, SafetyRefusalJudge, SafetyRewardModel
from .refusal import RefusalDetector, classify_refusal

__all__ = ["RefusalDetector", "SafetyCostModel", "SafetyRefusalJudge", "SafetyRewardModel", "classify_refusal"]
