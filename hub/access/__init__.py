"""Who may do what: the access policy, API tokens, the registry (SQLite), broker accounts and ACLs."""
