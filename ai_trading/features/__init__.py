"""The unified feature builder with its versioned spec and schema hash."""

from ai_trading.features.builder import FeatureBuilder, FeatureSet
from ai_trading.features.spec import FeatureDef, FeatureSpec, make_spec, registered_hashes

__all__ = ["FeatureBuilder", "FeatureDef", "FeatureSet", "FeatureSpec", "make_spec", "registered_hashes"]
