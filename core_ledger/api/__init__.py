"""The REST API base classes every ledger app subclasses (see ``core_ledger.api.urls``)."""
