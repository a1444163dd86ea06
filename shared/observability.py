"""One Powertools Logger for every runtime.

JSON lines on stderr (Lambda ships stderr to CloudWatch as it does stdout, and the CLI keeps
stdout for its own output). Log ids, counts, page numbers, durations, byte sizes, error codes
and exception class names; never message bodies, file names, text or patient fields.
"""

from __future__ import annotations

import logging
import resource
import sys

from aws_lambda_powertools import Logger

logger = Logger(service="docpipe", logger_handler=logging.StreamHandler(sys.stderr))


def peak_rss_kb() -> int:
    """This process's peak resident set size so far, in KiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
