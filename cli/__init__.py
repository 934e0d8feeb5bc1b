"""The `braid` command line."""
