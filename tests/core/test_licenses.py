"""core/licenses.py: the license texts library models ship, byte for byte."""

from __future__ import annotations

import hashlib

from pollama.core import licenses


def test_apache_2_0_is_the_text_apache_org_publishes() -> None:
    # LICENSE-2.0.txt from apache.org: 11358 bytes, this sha256.
    data = licenses.APACHE_2_0.encode()
    assert len(data) == 11358
    assert hashlib.sha256(data).hexdigest() == (
        "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30")
    assert licenses.APACHE_2_0.lstrip().startswith(
        "Apache License\n                           Version 2.0, January 2004")
