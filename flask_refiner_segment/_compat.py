"""What differs between the Python versions the package supports.

:meta private:
"""

from __future__ import annotations

import datetime as dt
import re
import sys

if sys.version_info >= (3, 11):
    fromisoformat = dt.datetime.fromisoformat
else:
    # Python 3.10's fromisoformat takes only what isoformat() writes: 3 or 6
    # fraction digits after a dot, offsets as +HH:MM[:SS]. 3.11 also takes any
    # number of digits (truncated to microseconds), a comma, and +HH, +HHMM,
    # +HHMMSS; this rewrites those to the 3.10 form, so that a timestamp that
    # one supported Python accepts is accepted by all of them.
    _EXTENDED = re.compile(
        r"(\d{4}-\d{2}-\d{2}.\d{2}:\d{2})"  # date, any one separator, HH:MM
        r"(?::(\d{2})(?:[.,](\d+))?)?"  # :SS, a fraction of any length
        r"(?:([+-]\d{2})(?::?(\d{2})(?::?(\d{2}))?)?)?",  # +HH, +HHMM, +HH:MM:SS
        re.ASCII,
    )

    def fromisoformat(date_string: str) -> dt.datetime:
        match = _EXTENDED.fullmatch(date_string)
        if match is not None:
            head, sec, frac, off_h, off_m, off_s = match.groups()
            text = head
            if sec is not None:
                text += ":" + sec
                if frac is not None:
                    text += "." + (frac + "00000")[:6]
            if off_h is not None:
                text += off_h + ":" + (off_m or "00")
                if off_s is not None:
                    text += ":" + off_s
            date_string = text
        return dt.datetime.fromisoformat(date_string)
