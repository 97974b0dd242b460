"""What exists in AWS, as the portal knows it: one account read and its listings written (``listings``), the sync's run over the organization (``sync``), and the pickers' search (``pickers``)."""
