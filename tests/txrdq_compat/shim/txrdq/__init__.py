"""A stand-in for the txrdq package that only re-exports fetchq's classes.

txrdq 0.2.14's own test suite runs against fetchq through it (see
``tests/test_txrdq_suite.py``).  Nothing here may adapt behaviour: whatever
compatibility fetchq offers lives in fetchq itself, so these modules hold
imports and nothing else (bar one placeholder, in ``dpq``).
"""
