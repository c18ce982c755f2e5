"""Example handler plugins for the four example pipelines."""
