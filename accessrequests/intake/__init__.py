"""The paste intake: an AccessDenied message as AWS prints it (``parse``), matched against the catalog to a pre-filled request (``resolve``)."""
