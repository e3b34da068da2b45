#!/usr/bin/env python3
"""Writes the hostile bounces of issue 11 item 7 to stdout.

Usage: bench/bounce-attacks.py KIND N
  repeat N     plain-text bounce whose body repeats a 4-line header-like block N times
  longline N   one line of N characters (address-like words)
  addresses N  a bounce listing N failed addresses, one a line
  multiparts N a delivery report of N multipart parts whose boundary never comes
  dashes N     a delivery report whose boundary is N dashes and an x, then N dashes
"""
import sys

HEAD = ("From: MAILER-DAEMON@example.org\nTo: list-bounces@example.com\n"
        "Subject: Undeliverable Mail\n\nDelivery failed 20 user@example.net\n")


def repeat(n):
    block = ("X-Mailman-Version: 2.0.3 (101270)\nReply-To: <postmaster@example.org>\n"
             "Content: text\n\n")
    return HEAD + block * n


def longline(n):
    word = "a@b.example "
    return HEAD + (word * (n // len(word) + 1))[:n] + "\n"


def addresses(n):
    lines = [f"  failed-recipient-{i:06d}@example.net\n" for i in range(n)]
    return (HEAD + "The following addresses failed:\n\n" + "".join(lines))


def report(outer):
    return ("From: MAILER-DAEMON@example.org\nTo: list-bounces@example.com\n"
            "Subject: Undeliverable Mail\nMIME-Version: 1.0\n"
            "Content-Type: multipart/report; report-type=delivery-status; "
            f'boundary="{outer}"\n\n'
            f"--{outer}\nContent-Type: text/plain\n\nDelivery failed 20 user@example.net\n")


def multiparts(n):
    part = '--outer\nContent-Type: multipart/mixed; boundary="never"\n\ntext\n'
    return report("outer") + part * n + "--outer--\n"


def dashes(n):
    return report("-" * n + "x") + "-" * n + "\n"


if __name__ == "__main__":
    kind, n = sys.argv[1], int(sys.argv[2])
    sys.stdout.write({"repeat": repeat, "longline": longline, "addresses": addresses,
                      "multiparts": multiparts, "dashes": dashes}[kind](n))
