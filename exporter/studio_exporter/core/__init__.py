"""The pure core: domain types, the transform and its policies; no I/O, no clock."""
