"""Test helpers shared by every test directory (real components, no mocks)."""
