"""Delivery: the engine loop (claim, deliver, record), transports, classification, retry."""
