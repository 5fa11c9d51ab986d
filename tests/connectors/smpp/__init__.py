"""Tests of the SMPP 3.4 stack."""
