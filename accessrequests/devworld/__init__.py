"""The demo's own stand-ins for parts of AWS (not the product: Gatehouse reaches them only through
``AWS_ENDPOINT_URL``)."""
