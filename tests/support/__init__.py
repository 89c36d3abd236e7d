"""Helpers shared by the test suite: a test PKI, free ports, and fixtures for real servers."""
