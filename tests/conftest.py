"""Test-session set-up: the proxy variables of the environment running the
tests (a developer's ``HTTPS_PROXY``, say) are removed, so every fetch in
the tests goes where the test sends it; proxy tests give their own."""

from __future__ import annotations

import os

for _name in list(os.environ):
    if _name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        del os.environ[_name]
