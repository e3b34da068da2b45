#!/usr/bin/python3
"""The independent DKIM/ARC signer and verifier of the tests (Debian's
python3-dkim, "dkimpy"), driven by tests/support/dkimpy.rs.

  dkimpy_tool.py sign DOMAIN SELECTOR KEYFILE ALGO [HEADER...]  < msg > signed msg
  dkimpy_tool.py arcsign DOMAIN SELECTOR KEYFILE SRV_ID         < msg > sealed msg
  dkimpy_tool.py verify DNS_IP:PORT                             < msg > JSON

KEYFILE is a PEM private key (rsa-sha256) or a base64 Ed25519 seed
(ed25519-sha256). `verify` checks every DKIM-Signature and the ARC chain,
with every TXT lookup sent to the given server (the test dnsmasq), and prints
{"dkim": [{"d", "s", "pass", "error"}], "arc": {"cv", "reason"}}.
"""
import json
import sys

import dkim
import dns.exception
import dns.message
import dns.query
import dns.rdatatype


def txt_lookup(server):
    host, port = server.rsplit(":", 1)

    def lookup(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        q = dns.message.make_query(name, dns.rdatatype.TXT)
        try:
            r = dns.query.udp(q, host, port=int(port), timeout=timeout)
        except dns.exception.Timeout as e:
            raise dkim.DnsTimeoutError(str(e))
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                return b"".join(list(rrset.items)[0].strings)
        return None

    return lookup


def main():
    cmd = sys.argv[1]
    msg = sys.stdin.buffer.read()
    if cmd == "sign":
        domain, selector, keyfile, algo = sys.argv[2:6]
        headers = [h.encode() for h in sys.argv[6:]] or None
        key = open(keyfile, "rb").read()
        sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                        signature_algorithm=algo.encode(),
                        canonicalize=(b"relaxed", b"relaxed"),
                        include_headers=headers)
        sys.stdout.buffer.write(sig + msg)
    elif cmd == "arcsign":
        domain, selector, keyfile, srv_id = sys.argv[2:6]
        key = open(keyfile, "rb").read()
        hdrs = dkim.arc_sign(msg, selector.encode(), domain.encode(), key, srv_id.encode())
        sys.stdout.buffer.write(b"".join(hdrs) + msg)
    elif cmd == "verify":
        lookup = txt_lookup(sys.argv[2])
        d = dkim.DKIM(msg, timeout=2)
        sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
        out = {"dkim": [], "arc": {}}
        for i, (_, value) in enumerate(sigs):
            tags = {}
            try:
                tags = dkim.util.parse_tag_value(value)
            except Exception:
                pass
            entry = {"d": tags.get(b"d", b"").decode(errors="replace"),
                     "s": tags.get(b"s", b"").decode(errors="replace"),
                     "pass": False, "error": ""}
            try:
                entry["pass"] = bool(dkim.DKIM(msg, timeout=2).verify(idx=i, dnsfunc=lookup))
            except Exception as e:
                entry["error"] = "%s: %s" % (type(e).__name__, e)
            out["dkim"].append(entry)
        try:
            cv, _, reason = dkim.arc_verify(msg, dnsfunc=lookup)
            out["arc"] = {"cv": (cv or b"fail").decode(), "reason": reason}
        except Exception as e:
            out["arc"] = {"cv": "error", "reason": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(out))
    else:
        sys.exit("unknown command " + cmd)


main()
