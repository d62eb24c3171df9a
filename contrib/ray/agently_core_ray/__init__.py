"""agently-core-ray: providers and action loops on a Ray cluster."""
