"""User segments: saved rules over inbound data and delivered survey answers.

See ``README_SECTION.md`` for the rule format.
"""

from .rules import SegmentRuleError
from .rules import validate_rules

__all__ = ["SegmentRuleError", "validate_rules"]
