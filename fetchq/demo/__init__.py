"""The embedded demo: a local web site that behaves like a real, imperfect one,
for ``make demo`` / ``fetchq demo`` and for tests.  Loopback only."""

from fetchq.demo.site import DemoSite, SiteBehaviour

__all__ = ["DemoSite", "SiteBehaviour"]
