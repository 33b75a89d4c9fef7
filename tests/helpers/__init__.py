"""Helpers shared by the test suites (torch references, small models, edge harnesses)."""
