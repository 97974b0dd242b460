"""Worlds for the demo, the tests and the benchmarks, not the product: the demo's small AWS world on a moto server
(``demo_world``), the scale world's organization of thousands of accounts (``scale_world``) and its million
historical requests (``scale_history``), and stand-ins for parts of AWS that moto lacks (Gatehouse reaches them only
through ``AWS_ENDPOINT_URL``)."""
