"""``python -m fetchq``: the same as the ``fetchq`` command."""

from fetchq.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
