"""`python -m sandbox`: run the sandbox server."""

import sys

from sandbox.server import main

sys.exit(main())
