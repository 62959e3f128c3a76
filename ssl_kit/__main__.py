"""``python -m ssl_kit`` (also ``accelerate launch -m ssl_kit``)."""

import sys

from ssl_kit.cli import main

if __name__ == "__main__":
    sys.exit(main())
