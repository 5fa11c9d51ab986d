"""Carrier connectors, one module or package per protocol, found by kind (see base.py)."""
