"""agently-core-docker: hardened Docker containers as managed execution environments (kind
``docker``) and the ``docker`` action package (``run_in_container``). docker-py is imported
only when a container is needed."""
