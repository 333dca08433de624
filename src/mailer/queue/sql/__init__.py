"""The queue's SQL that only one database speaks, one module per database."""
