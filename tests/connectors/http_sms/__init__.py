"""Tests of the HTTP SMS connector, its signature and its simulator."""
