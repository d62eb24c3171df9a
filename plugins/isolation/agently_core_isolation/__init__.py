"""Process isolation for agently-core sandboxes. Import from the submodules
(``agently_core_isolation.sandbox``); this package stays empty so discovery is cheap."""
