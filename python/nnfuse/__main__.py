"""``python -m nnfuse`` (also the ``nnfuse`` console script): info, check,
bench and accuracy. See ``python -m nnfuse --help``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
