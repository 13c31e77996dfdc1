"""Training of the speech and image encoders on background data (never the test classes). Needs torch."""
