"""``python -m tio2fiji.cli``: the ``tio2fiji`` command."""

from . import main

if __name__ == "__main__":  # pragma: no cover
    main()
