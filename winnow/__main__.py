"""``python -m winnow`` is the ``winnow`` command."""

from winnow.pipeline.cli.app import main

if __name__ == "__main__":
    main()
