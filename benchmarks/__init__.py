"""Side-by-side speed measurements; results are JSON, reported as ratios in docs/."""
