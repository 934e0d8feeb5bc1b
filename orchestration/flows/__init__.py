"""The flows, one module per job; each task calls the function the `braid` command calls."""
