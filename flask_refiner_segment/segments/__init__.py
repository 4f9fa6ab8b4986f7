"""User segments: saved rules over inbound data and recorded survey answers.

The flow: :mod:`.rules` (validation) → :mod:`.compile` (one SQL query) →
:mod:`.service` (saved segments, membership); :mod:`.views` is the page. The
rule format is in the README, "Rule format".
"""

from .rules import SegmentRuleError
from .rules import validate_rules
from .service import SavedSegment

__all__ = ["SavedSegment", "SegmentRuleError", "validate_rules"]
