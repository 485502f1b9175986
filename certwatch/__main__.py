"""``python -m certwatch``: run the service (see :mod:`certwatch.cli`)."""

from certwatch.cli import main

if __name__ == "__main__":
    main()
