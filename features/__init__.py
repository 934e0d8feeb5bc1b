"""Braid feature definitions: schemas, window semantics and the feature math.

Every feature is defined here once, as data plus pure functions over columns (numpy / Arrow).
The streaming engine (`streaming/`) and the batch engine (`batch/`) both call this code, so
online and offline values agree by construction. This package imports no other Braid package.
"""
