"""The queue: the models, and every write that changes a message's state (see docs/architecture)."""
