"""IDLock shared runtime."""
