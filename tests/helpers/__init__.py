"""Builders shared by test modules (tiny audio, models, configs); fixtures live in tests/conftest.py.

Test modules import from here, never from one another.
"""
