#!/usr/bin/env python3
"""Reference for bench/bounces.sh: GNU Mailman's bounce parser (flufl.bounce)
reading one message on stdin, printing the JSON score-bounces expects.
flufl.bounce reports addresses only (no status, no hard/soft verdict)."""
import email
import json
import sys

from flufl.bounce import scan_message

msg = email.message_from_bytes(sys.stdin.buffer.read())
try:
    found = scan_message(msg)
except Exception:  # a parser crash counts as "no recipients"
    found = set()
rcpts = sorted(a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in found)
print(json.dumps({"recipients": rcpts, "hard": None, "status": None}))
