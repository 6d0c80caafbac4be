"""Suite-wide settings: property-based tests draw the same examples on every run (derandomize),
so a CI failure reproduces; HYPOTHESIS_PROFILE=explore draws fresh and many more examples."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("gandist", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gandist"))
