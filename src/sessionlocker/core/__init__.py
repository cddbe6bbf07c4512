"""The pure core: record format, transforms, lease and locker state machines. No I/O."""
