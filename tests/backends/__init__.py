"""Database backends for the test suite only."""
