"""The JSON API, /api/v1/: the same selectors and services as the web pages, no second set of rules."""
