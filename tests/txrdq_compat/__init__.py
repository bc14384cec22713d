"""txrdq 0.2.14's own test suite, run against fetchq (see ``suite``)."""
