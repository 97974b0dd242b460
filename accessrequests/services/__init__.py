"""Services: the only code that changes state. Each is one transaction that also writes its audit event."""
