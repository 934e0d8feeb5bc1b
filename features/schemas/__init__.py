"""Versioned record schemas shared by every engine."""
