"""Root pytest configuration: plain `pytest` (and `pytest --nbval notebooks/`) runs in the fast `ci` profile."""

import os

os.environ.setdefault("MINICLIP_PROFILE", "ci")
