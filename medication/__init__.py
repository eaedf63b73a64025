"""Detox medication: orders, the eMAR (administrations) and the controlled-drug register."""
