"""agently-core-web: the Browse and Search action packages."""
