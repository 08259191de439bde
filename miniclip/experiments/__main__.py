"""`python -m miniclip.experiments [NAME …] [--profile P] [--force] [--json]`."""

import sys

from miniclip.experiments.runner import main

sys.exit(main())
