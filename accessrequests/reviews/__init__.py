"""Access reviews: campaigns over long-lived access, keep or revoke, deadlines (``campaigns``), and their evidence of last use read from IAM (``evidence``)."""
